"""`activethief attack` end to end on tiny models and a slice of MNIST."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from activethief import cli
from activethief.oracle import ModelOracle


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    if not any(command.name == "attack" for command in cli.app.registered_commands):
        cli._register_optional_commands()
    return cli.app


def _invoke(app: typer.Typer, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["attack", *args])
    return result.exit_code, result.output


def test_attack_cli_writes_result_and_examples(
    app: typer.Typer, model_files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "attack"
    code, output = _invoke(
        app,
        "--substitute",
        str(model_files["substitute"]),
        "--target",
        str(model_files["target"]),
        "--dataset",
        "mnist",
        "--method",
        "pgd",
        "--eps",
        "0.3",
        "--steps",
        "5",
        "--step-size",
        "0.08",
        "--no-random-start",
        "--targeted",
        "least-likely",
        "--n",
        "40",
        "--seed",
        "0",
        "--out",
        str(out),
        "--query-budget",
        "100",
    )
    assert code == 0, output
    record = json.loads((out / "result.json").read_text())
    assert record["attack"] == {
        "method": "pgd",
        "eps": 0.3,
        "target_class": "least-likely",
        "batch_size": 256,
        "steps": 5,
        "step_size": 0.08,
        "random_start": False,
    }
    assert record["n"] == 40 and record["dataset"] == "mnist"
    assert (record["clean_queries"], record["adversarial_queries"], record["oracle_used"]) == (40, 40, 80)
    assert record["oracle_budget"] == 100
    for key in (
        "transfer_success_rate",
        "targeted_transfer_success_rate",
        "whitebox_success_rate",
        "target_whitebox_success_rate",
    ):
        assert 0.0 <= record[key] <= 1.0
    assert 0.0 < record["mean_linf"] <= 0.3 + 1e-6
    assert (out / "examples.png").read_bytes()[:4] == b"\x89PNG"
    assert "transfer success" in output and "result.json" in output


def test_attack_cli_fgsm_with_label_only_target(
    app: typer.Typer, model_files: dict[str, Path], tmp_path: Path
) -> None:
    code, output = _invoke(
        app,
        "--substitute",
        str(model_files["substitute"]),
        "--target",
        str(model_files["target"]),
        "--method",
        "fgsm",
        "--eps",
        "0.2",
        "--n",
        "20",
        "--out",
        str(tmp_path),
        "--output-mode",
        "label",
    )
    assert code == 0, output
    record = json.loads((tmp_path / "result.json").read_text())
    assert record["attack"]["method"] == "fgsm" and record["output_mode"] == "label"
    assert (
        record["targeted_transfer_success_rate"] is None
        and record["target_whitebox_success_rate"] is not None
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--query-budget", "10"], "error: query budget exceeded: 0 of 10 queries used, 40 more asked"),
        (["--method", "deepfool"], "error: unknown attack method 'deepfool'"),
        (["--method", "fgsm", "--steps", "3"], "error: fgsm does not take steps"),
        (["--eps", "-1"], "error: eps must be"),
        (["--targeted", "cat"], "error: targeted must be 'least-likely' or a class index"),
        (["--n", "0"], "error: --n must be >= 1"),
    ],
)
def test_attack_cli_bad_input_is_one_clean_line(
    app: typer.Typer, model_files: dict[str, Path], tmp_path: Path, extra: list[str], message: str
) -> None:
    code, output = _invoke(
        app,
        "--substitute",
        str(model_files["substitute"]),
        "--target",
        str(model_files["target"]),
        "--n",
        "20",
        "--out",
        str(tmp_path / "x"),
        *extra,
    )
    assert code == 1
    assert message in output and "Traceback" not in output
    assert not (tmp_path / "x" / "result.json").exists()


def test_attack_cli_missing_model_file_is_a_clean_error(app: typer.Typer, tmp_path: Path) -> None:
    code, output = _invoke(app, "--substitute", str(tmp_path / "nope.pt"), "--target", str(tmp_path / "t.pt"))
    assert code == 1 and "does not exist" in output


def test_attack_cli_url_target_without_http_oracle_says_what_to_install(
    app: typer.Typer, model_files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "activethief.oracle.http", None)  # as if the serve extra were missing
    code, output = _invoke(
        app,
        "--substitute",
        str(model_files["substitute"]),
        "--target",
        "http://127.0.0.1:9/v2/models/m",
        "--n",
        "5",
        "--out",
        str(tmp_path),
    )
    assert code == 1 and "HTTP targets need the serve extra" in output and "Traceback" not in output


def test_attack_cli_url_target_goes_through_the_http_oracle(
    app: typer.Typer, model_files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    http = pytest.importorskip("activethief.oracle.http")
    calls: list[dict[str, Any]] = []

    class FakeHttpOracle(ModelOracle):
        """Answers from the local target file, recording how the command built it."""

        def __init__(
            self, url: str, *, api_key: str | None = None, budget: int | None = None, ledger: Any = None
        ) -> None:
            calls.append({"url": url, "api_key": api_key, "budget": budget})
            super().__init__(model_files["target"], budget=budget, ledger=ledger)

    monkeypatch.setattr(http, "HttpOracle", FakeHttpOracle)
    monkeypatch.setenv("ATTACK_TEST_KEY", "s3cret")
    url = "http://127.0.0.1:9/v2/models/mnist"
    args = [
        "--substitute",
        str(model_files["substitute"]),
        "--target",
        url,
        "--method",
        "fgsm",
        "--n",
        "10",
        "--out",
        str(tmp_path),
        "--query-budget",
        "50",
    ]
    code, output = _invoke(app, *args, "--api-key-env", "ATTACK_TEST_KEY")
    assert code == 0, output
    assert calls == [{"url": url, "api_key": "s3cret", "budget": 50}]
    record = json.loads((tmp_path / "result.json").read_text())
    assert record["target"] == url and record["oracle_used"] == 20
    assert record["target_whitebox_success_rate"] is None  # a remote target has no white-box upper bound

    monkeypatch.delenv("ATTACK_TEST_KEY")
    code, output = _invoke(app, *args, "--api-key-env", "ATTACK_TEST_KEY")
    assert code == 1 and "ATTACK_TEST_KEY" in output and "not set" in output
