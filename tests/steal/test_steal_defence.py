"""`activethief steal --defence SPEC --prada DELTA`: a defended local target (answers in the ledger are the
defence's), the defence recorded in the run's config, PRADA's report (kept across a resume), and clean
errors for a bad spec and for a defence asked of an HTTP target."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from activethief import cli, models
from activethief.errors import ConfigError
from activethief.oracle import Ledger, parse_defence
from activethief.steal import StealConfig
from activethief.training import predict_proba

if not any(command.name == "steal" for command in cli.app.registered_commands):
    cli._register_optional_commands()  # once per session, whichever CLI test module is first
runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(cli.app, list(args))
    return result.exit_code, result.output


def test_steal_config_keeps_the_defence_in_its_canonical_spelling() -> None:
    config = StealConfig(budget=10, defence="reverse-sigmoid:0.7")
    assert config.defence == "reverse-sigmoid:0.7,0.1" and config.to_dict()["defence"] == config.defence
    assert "defence" not in StealConfig(budget=10).to_dict()  # undefended records keep their old keys
    with pytest.raises(ConfigError, match=r"StealConfig\.defence: invalid defence 'noise:-1'"):
        StealConfig(budget=10, defence="noise:-1")


def test_steal_a_defended_target_watched_by_prada_then_resume(tmp_path: Path) -> None:
    target = tmp_path / "target.pt"
    model = models.build("cnn2", 10, seed=0)
    models.save(model, target, arch="cnn2", num_classes=10)
    pool = np.random.default_rng(0).integers(0, 256, (40, 1, 28, 28), dtype=np.uint8)
    np.save(tmp_path / "pool.npy", pool)
    out = tmp_path / "run"
    args = [
        "steal", "--target", str(target), "--pool", str(tmp_path / "pool.npy"), "--out", str(out),
        "--budget", "10", "--batch-size", "10", "--strategy", "random", "--quiet",
        "--defence", "reverse-sigmoid:0.7", "--prada", "0.95",
    ]  # fmt: skip
    code, text = invoke(*args)
    assert code == 0, text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["defence"] == "reverse-sigmoid:0.7,0.1"
    report = json.loads((out / "prada.json").read_text())
    assert report == {"delta": 0.95, "flagged": False, "flagged_at": None, "queries": 10, "statistic": None}
    assert '"flagged_at": null' in text and '"defence": "reverse-sigmoid:0.7,0.1"' in text

    ledger = Ledger(out / "ledger.sqlite")
    keys, answers, _ = ledger.all_answers()
    ledger.close()
    truthful = predict_proba(model, pool[keys].astype(np.float32) / 255.0)
    expected = parse_defence("reverse-sigmoid:0.7").apply(truthful, np.random.default_rng(0))
    np.testing.assert_allclose(answers, expected, atol=1e-5)
    assert not np.allclose(answers, truthful, atol=1e-3)

    code, text = invoke(*args, "--resume")  # nothing left to buy; PRADA replays the run's queries
    assert code == 0, text
    assert json.loads((out / "prada.json").read_text())["queries"] == 10


def test_bad_defences_are_clean_errors(tmp_path: Path) -> None:
    base = ["steal", "--pool", "mnist", "--out", str(tmp_path / "run"), "--quiet"]
    code, text = invoke(*base, "--target", "http://127.0.0.1:9/v2/models/m", "--defence", "noise:0.1")
    assert code != 0 and "an HTTP target applies its own answer policy on its server" in text
    code, text = invoke(*base, "--target", str(tmp_path / "none.pt"), "--defence", "laplace:1")
    assert code != 0 and "unknown policy 'laplace'" in text
