"""CLI smoke tests: data, train-target and steal end to end on small slices, and clean error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from activethief import cli, models

cli._register_optional_commands()
runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(cli.app, list(args))
    return result.exit_code, result.output


def test_data_list_and_unknown_dataset(mnist_small: object) -> None:
    code, out = invoke("data", "list")
    assert code == 0 and "mnist" in out and "cached" in out
    code, out = invoke("data", "fetch", "imagenet")
    assert code == 1 and "unknown dataset 'imagenet'" in out and "Traceback" not in out


def test_train_target_then_steal(tmp_path: Path, mnist_small: object) -> None:
    target = tmp_path / "target.pt"
    code, out = invoke(
        "train-target",
        "--dataset",
        "mnist",
        "--limit",
        "2000",
        "--epochs",
        "5",
        "--out",
        str(target),
        "--quiet",
    )
    assert code == 0, out
    _, meta = models.load(target)
    assert meta["train_images"] == 2000 and meta["test_accuracy"] > 0.5  # chance is 0.1

    run = tmp_path / "run"
    args = [
        "steal",
        "--target",
        str(target),
        "--pool",
        "mnist",
        "--pool-size",
        "2000",
        "--test",
        "mnist",
        "--budget",
        "300",
        "--batch-size",
        "100",
        "--strategy",
        "entropy+kcenter",
        "--seeding",
        "kmeans:10",
        "--stop",
        "budget",
        "--output-mode",
        "topk:3",
        "--out",
        str(run),
        "--quiet",
    ]
    code, out = invoke(*args)
    assert code == 0, out
    assert "round   3" in out and '"queries_used": 300' in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stopped_by"] == "budget" and 0 < summary["agreement"] <= 1
    # A second run into the same folder must not overwrite paid answers.
    code, out = invoke(*args)
    assert code == 1 and "--resume" in out
    code, out = invoke(*args, "--resume")
    assert code == 0, out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strategy", "best"], "unknown selection strategy"),
        (["--stop", "entropy:-1"], "invalid stopping rule"),
        (["--output-mode", "top3"], "invalid output mode"),
        (["--target", "missing.pt"], "does not exist"),
    ],
)
def test_steal_errors_are_clean(tmp_path: Path, args: list[str], message: str, mnist_small: object) -> None:
    base = {"--target": str(tmp_path / "t.pt"), "--out": str(tmp_path / "run"), "--budget": "10"}
    models.save(models.build("mlp"), tmp_path / "t.pt", arch="mlp", num_classes=10)
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    code, out = invoke("steal", *[item for pair in base.items() for item in pair], "--quiet")
    assert code == 1 and message in out and "Traceback" not in out
