"""`activethief attack --ensemble-from RUN`: craft on an ensemble built from a steal run, no extra queries."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from activethief import cli
from activethief.oracle import Ledger


def _app() -> typer.Typer:
    if not any(command.name == "attack" for command in cli.app.registered_commands):
        cli._register_optional_commands()
    return cli.app


def test_attack_crafts_on_an_ensemble_of_a_kept_run(model_files: dict[str, Path], tmp_path: Path) -> None:
    run, target = tmp_path / "run", str(model_files["target"])
    steal = ["steal", "--target", target, "--pool", "mnist", "--out", str(run), "--budget", "20"]
    steal += ["--batch-size", "10", "--strategy", "random", "--keep-rounds", "--quiet"]
    stolen = CliRunner().invoke(_app(), steal)
    assert stolen.exit_code == 0, stolen.output
    assert sorted(p.name for p in (run / "rounds").iterdir()) == ["substitute-r1.pt", "substitute-r2.pt"]
    out = tmp_path / "attack"
    args = ["attack", "--ensemble-from", str(run), "--ensemble-archs", "mlp", "--ensemble-rounds", "1"]
    args += ["--target", target, "--method", "fgsm", "--eps", "0.3", "--n", "20", "--out", str(out)]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "result.json").read_text())
    assert record["substitute"] == f"ensemble of {run}: substitute, rounds [1], archs ['mlp']"
    assert record["n"] == 20 and 0.0 <= record["transfer_success_rate"] <= 1.0
    # Building the ensemble asked the target nothing: the ledger still holds the run's 20 answers.
    ledger = Ledger(run / "ledger.sqlite")
    assert len(ledger) == 20
    ledger.close()


def test_substitute_and_ensemble_together_is_a_clean_error(
    model_files: dict[str, Path], tmp_path: Path
) -> None:
    args = ["attack", "--substitute", str(model_files["substitute"]), "--ensemble-from", str(tmp_path)]
    result = CliRunner().invoke(_app(), [*args, "--target", str(model_files["target"]), "--n", "5"])
    assert result.exit_code != 0
    assert "either --substitute or --ensemble-from" in result.output and "Traceback" not in result.output
