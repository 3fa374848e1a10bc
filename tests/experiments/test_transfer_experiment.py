"""The transfer experiment on a tiny grid: rows, resume, snapshots per budget, and its report section."""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch
import typer
from experiment_helpers import TINY, comparable, finished_rows
from typer.testing import CliRunner

from activethief.errors import ConfigError
from activethief.experiments import (
    GridReport,
    SerialExecutor,
    StealCell,
    command,
    resolve_experiments,
    run_experiments,
    write_report,
)
from activethief.experiments.inputs import InputSpec, load_inputs, target_path, torch_threads
from activethief.experiments.store import CELLS
from activethief.experiments.transfer import check_transfer, steal_with_snapshots

PARAMS = replace(
    TINY,
    repeats=1,
    transfer_strategies=("random", "entropy"),
    transfer_budgets=(100, 200),
    transfer_methods=("fgsm", "pgd"),
    transfer_epsilons=(0.1, 0.3),
    transfer_images=20,
)
GRID = list(itertools.product((100, 200), ("fgsm", "pgd"), (0.1, 0.3)))


@dataclass
class TransferRun:
    out: Path
    report: GridReport


@pytest.fixture(scope="module")
def transfer_run(tmp_path_factory: pytest.TempPathFactory, target_dir: Path) -> TransferRun:
    out = tmp_path_factory.mktemp("transfer")
    report = run_experiments(
        "transfer", "mnist", out=out, params=PARAMS, target_dir=target_dir, executor=SerialExecutor(threads=1)
    )
    return TransferRun(out, report)


def test_transfer_runs_end_to_end_and_resumes_without_recomputing(
    transfer_run: TransferRun, target_dir: Path
) -> None:
    report = transfer_run.report
    assert (report.planned, report.ran, report.skipped, report.failed) == (3, 3, 0, [])
    assert report.queries == 400  # two 200-query trajectories; the white-box cell buys none
    rows = finished_rows(transfer_run.out)
    transfer = [r for r in rows if r["kind"] == "transfer"]
    whitebox = [r for r in rows if r["kind"] == "transfer-whitebox"]
    for strategy in ("random", "entropy"):
        mine = [r for r in transfer if r["strategy"] == strategy]
        assert sorted((r["queries"], r["method"], r["eps"]) for r in mine) == GRID
        assert {r["queries"]: r["steal_round"] for r in mine} == {100: 1, 200: 2}
    assert sorted((r["method"], r["eps"]) for r in whitebox) == sorted({(m, e) for _, m, e in GRID})
    for row in transfer:
        assert row["n"] == 20 and row["repeat"] == 0 and row["settings_id"] and row["budget"] == 200
        assert row["attack"]["method"] == row["method"] and row["attack"]["eps"] == row["eps"]
        assert row["mean_linf"] <= row["eps"] + 1e-6 and row["clean_queries"] == 0
        for name in (
            "transfer_success_rate",
            "whitebox_success_rate",
            "target_accuracy",
            "substitute_accuracy",
            "agreement",
            "test_accuracy",
            "test_agreement",
        ):
            assert 0.0 <= row[name] <= 1.0, (name, row[name])
    for row in whitebox:
        assert 0.0 <= row["target_whitebox_success_rate"] <= 1.0
    bound = {(r["method"], r["eps"]): r["target_whitebox_success_rate"] for r in whitebox}
    assert bound[("pgd", 0.3)] >= bound[("fgsm", 0.1)]
    # finished cells leave no checkpoints; only the shared snapshots (2 budgets x 2 strategies;
    # the white-box cell has none) stay for later transfer runs
    left = sorted((transfer_run.out / "work").rglob("*.pt"))
    assert len(left) == 4 and all(p.parent.parent.name == "snapshots" for p in left)

    lines = (transfer_run.out / CELLS).read_text().count("\n")
    again = run_experiments(
        "transfer",
        "mnist",
        out=transfer_run.out,
        params=PARAMS,
        target_dir=target_dir,
        executor=SerialExecutor(threads=1),
    )
    assert (again.ran, again.skipped) == (0, 3)
    assert (transfer_run.out / CELLS).read_text().count("\n") == lines


def test_report_draws_the_transfer_figures_and_table(transfer_run: TransferRun, tmp_path: Path) -> None:
    files = write_report(transfer_run.out, tmp_path)
    assert {"fig8_transfer.png", "fig9_transfer_eps.png"} <= {p.name for p in files.figures}
    for name in ("fig8_transfer.png", "fig9_transfer_eps.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "transfer" not in files.missing
    summary = list(csv.DictReader((tmp_path / "transfer.csv").open()))
    assert sorted((int(r["queries"]), r["method"], float(r["eps"])) for r in summary) == sorted(GRID * 2)
    for row in summary:
        assert row["n"] == "1" and 0.0 <= float(row["transfer_pct_mean"]) <= 100.0
        assert 0.0 <= float(row["target_whitebox_pct_mean"]) <= 100.0
    readme = files.markdown.read_text()
    assert "## transfer" in readme and "![fig8_transfer.png](fig8_transfer.png)" in readme
    assert "Papernot et al. (2017)" in readme and "84.24%" in readme and "≥ 90%" in readme
    assert "This run: met" in readme or "This run: not met" in readme
    assert "| mnist | pgd | 0.3 | entropy | 200 | 1 |" in readme  # the table shows the largest ε only
    assert "| mnist | pgd | 0.1 |" not in readme


def test_snapshots_are_the_substitutes_of_shorter_runs(
    target_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = InputSpec(
        "mnist", str(target_path(target_dir, "mnist").resolve()), PARAMS.pool_size, PARAMS.test_size
    )
    inputs = load_inputs(spec, 1)
    cell = StealCell("mnist", "entropy", "random", 100, 100, 300, 0)
    with torch_threads(1):
        snapshots = steal_with_snapshots(cell, (100, 200), inputs, PARAMS, tmp_path / "cell")
        for budget in (100, 200):
            alone = replace(cell, budget=budget).run_steal(inputs, PARAMS, None).substitute
            kept = snapshots[budget].model.state_dict()
            assert snapshots[budget].record["train_size"] == budget
            assert all(torch.equal(kept[k], v) for k, v in alone.state_dict().items())

    def no_steal(*args: object, **kwargs: object) -> None:
        raise AssertionError("the snapshots were there; nothing should be stolen again")

    monkeypatch.setattr(StealCell, "run_steal", no_steal)
    again = steal_with_snapshots(cell, (100, 200), inputs, PARAMS, tmp_path / "cell")
    assert all(torch.equal(again[200].model.state_dict()[k], v) for k, v in kept.items())


def test_transfer_attacks_the_strategies_trajectories_without_stealing_again(
    transfer_run: TransferRun, target_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    executor = SerialExecutor(threads=1)
    run_experiments(
        "strategies", "mnist", out=tmp_path, params=PARAMS, target_dir=target_dir, executor=executor
    )

    def no_steal(*args: object, **kwargs: object) -> None:
        raise AssertionError("the strategies cells kept these snapshots; nothing should be stolen again")

    monkeypatch.setattr(StealCell, "run_steal", no_steal)
    report = run_experiments(
        "transfer", "mnist", out=tmp_path, params=PARAMS, target_dir=target_dir, executor=executor
    )
    assert report.ran == 3 and not report.failed  # two trajectories' attacks and the white-box cell

    def attack_rows(out: Path) -> list[str]:
        return comparable([r for r in finished_rows(out) if r["kind"] == "transfer"])

    assert attack_rows(tmp_path) == attack_rows(transfer_run.out)  # the same as stealing them anew


def test_transfer_settings_are_checked_and_transfer_is_not_part_of_all() -> None:
    check_transfer(PARAMS, 600)
    with pytest.raises(ConfigError, match="not rounds of the stealing trajectory"):
        check_transfer(replace(PARAMS, transfer_budgets=(150,)), 600)
    with pytest.raises(ConfigError, match="the pool holds 600 images"):
        check_transfer(replace(PARAMS, transfer_budgets=(100, 700)), 600)
    with pytest.raises(ConfigError, match="unknown attack method"):
        check_transfer(replace(PARAMS, transfer_methods=("cw",)), 600)
    assert "transfer" not in [e.name for e in resolve_experiments("all")]
    assert [e.name for e in resolve_experiments("all,transfer")][-1] == "transfer"
    assert [e.name for e in resolve_experiments("transfer")] == ["transfer"]


def test_dry_run_counts_the_transfer_grid(mnist_small: object, tmp_path: Path) -> None:
    app = typer.Typer()
    command.register(app)
    fresh = ["--out", str(tmp_path), "--target-dir", str(tmp_path)]
    result = CliRunner().invoke(app, ["experiment", "transfer", "--dataset", "mnist", "--dry-run", *fresh])
    assert result.exit_code == 0, result.output
    # 4 strategies x 5 repeats to 20k queries, and the white-box cell
    assert "mnist: 20 steal runs and 1 other cells, 400,000 queries" in result.output
