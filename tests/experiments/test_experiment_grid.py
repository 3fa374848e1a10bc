"""Experiments as data, without training: cells, seeds, sharing, results file, CPU split, study numbers."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from experiment_helpers import TINY

from activethief import models
from activethief.errors import ConfigError
from activethief.experiments import (
    EXPERIMENTS,
    GridParams,
    LocalPoolExecutor,
    Results,
    Scope,
    SerialExecutor,
    StealCell,
    append_rows,
    complete_cells,
    derive_seed,
    executors,
    make_executor,
    plan_grid,
    read_rows,
    resolve_experiments,
    split_cpus,
    stop_point,
)
from activethief.experiments.cells import training_steps
from activethief.experiments.grid import QUICK
from activethief.experiments.inputs import weights_sha256

BOTH = ["mnist", "fashion-mnist"]


def test_seed_is_stable_and_ignores_the_budget() -> None:
    short = StealCell("mnist", "entropy", "random", 1000, 1000, 10_000, 0)
    long = StealCell("mnist", "entropy", "random", 1000, 1000, 60_000, 0)
    assert short.seed(0) == long.seed(0) == derive_seed(0, "mnist", "entropy", "random", 1000, 1000, 0)
    assert short.share_key == long.share_key and short.cell_id != long.cell_id
    others = {
        StealCell("mnist", "entropy", "random", 1000, 1000, 10_000, 1).seed(0),
        StealCell("fashion-mnist", "entropy", "random", 1000, 1000, 10_000, 0).seed(0),
        StealCell("mnist", "margin", "random", 1000, 1000, 10_000, 0).seed(0),
        short.seed(1),
    }
    assert short.seed(0) not in others and len(others) == 4
    assert 0 <= short.seed(0) < 2**32


def test_full_grid_counts_and_sharing() -> None:
    plan = plan_grid(
        resolve_experiments("all"), BOTH, GridParams(), {"mnist": 60_000, "fashion-mnist": 60_000}
    )
    assert len(plan.tasks) == 340 and plan.queries() == 3_800_000
    mnist = [t for t in plan.tasks if isinstance(t, StealCell) and t.dataset == "mnist"]
    # 9 strategies + 4 more seed sizes + 4 cluster seedings x 5 sizes + full data = 34 runs per repeat.
    assert len(mnist) == 170
    entropy = [t for t in mnist if t.strategy == "entropy" and t.seeding == "random" and t.seed_size == 1000]
    # strategies (20k), seed-size (10k), seeding (1k) and stopping (whole pool) share one run per repeat.
    assert sorted(t.budget for t in entropy) == [60_000] * 5
    # seed-only random cells are prefixes of the seed-size runs, not runs of their own.
    assert not [t for t in mnist if t.seeding == "random" and t.budget == t.seed_size < 60_000]
    alone = plan_grid(resolve_experiments("strategies"), ["mnist"], GridParams(), {"mnist": 60_000})
    assert len(alone.tasks) == 9 * 5 and alone.queries() == 45 * 20_000


def test_cost_model_follows_the_training_settings() -> None:
    cell = StealCell("mnist", "entropy", "random", 1000, 1000, 20_000, 0)
    fit = GridParams().fit
    assert training_steps(fit, 1000, warm=False) == fit.min_steps  # a small cold round is step-bound
    assert training_steps(fit, 20_000, warm=True) == fit.warm_steps == 200
    cold = replace(GridParams(), fit=replace(fit, warm_steps=0))
    # every round trained like the first costs more the more answers there are
    assert cell.work(60_000, cold) > 2 * cell.work(60_000, GridParams())
    # the random strategy never scores the pool, k-means seeding scores it (and clusters) once more
    scored = cell.work(60_000, GridParams())
    assert replace(cell, strategy="random").work(60_000, GridParams()) < scored
    assert replace(cell, seeding="kmeans:10").work(60_000, GridParams()) > scored


def test_target_identity_is_its_weights_not_its_file(tmp_path: Path) -> None:
    model = models.build("cnn2", 10, seed=0)
    models.save(model, tmp_path / "a.pt", arch="cnn2", num_classes=10, train_seconds=1.0)
    models.save(model, tmp_path / "b.pt", arch="cnn2", num_classes=10, train_seconds=2.0)
    assert (tmp_path / "a.pt").read_bytes() != (tmp_path / "b.pt").read_bytes()
    a, b = (weights_sha256(models.load(tmp_path / f"{n}.pt")[0]) for n in "ab")
    assert a == b != weights_sha256(models.build("cnn2", 10, seed=1))


def test_quick_grid_is_small() -> None:
    plan = plan_grid(resolve_experiments("all"), BOTH, QUICK, {"mnist": 1000, "fashion-mnist": 1000})
    assert len(plan.tasks) == 96 and plan.seconds() < 3600


def test_names_and_parameters_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"unknown experiment 'nope'; known: all, seeding, strategies"):
        resolve_experiments("nope")
    assert [e.name for e in resolve_experiments("stopping,seeding")] == ["stopping", "seeding"]
    with pytest.raises(ConfigError, match="pool holds 600"):
        GridParams().validate(600)
    with pytest.raises(ConfigError, match="kmeans"):
        GridParams(seedings=("kmeans:x",)).validate(60_000)
    with pytest.raises(ConfigError, match="unknown grid parameters"):
        GridParams.from_dict({"repeat": 3})
    assert GridParams.from_dict(json.loads(json.dumps(TINY.to_dict()))) == TINY
    assert set(EXPERIMENTS) >= {"seeding", "strategies", "seed-size", "stopping", "full-data"}


def test_cpu_split() -> None:
    assert split_cpus(2) == (1, 2)  # one 2-thread process beats two 1-thread ones on 2 cores
    assert split_cpus(16) == (8, 2)
    assert split_cpus(2, workers=2) == (2, 1)
    assert split_cpus(16, threads=4) == (4, 4)
    assert split_cpus(1) == (1, 1)
    with pytest.raises(ConfigError):
        split_cpus(2, workers=0)


def test_executor_from_cli_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executors, "available_cpus", lambda: 16)
    pool = make_executor()
    assert isinstance(pool, LocalPoolExecutor) and (pool.workers, pool.threads) == (8, 2)
    monkeypatch.setattr(executors, "available_cpus", lambda: 2)
    serial = make_executor()
    assert isinstance(serial, SerialExecutor) and serial.threads == 2
    assert isinstance(make_executor(workers=2), LocalPoolExecutor)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ConfigError, match=r"pip install 'activethief\[ray\]'"):
        make_executor(ray_address="auto")


def _row(
    attempt: str, round_: int, n_rows: int, settings_id: str = "s1", budget: int = 300
) -> dict[str, Any]:
    cell = StealCell("mnist", "entropy", "random", 100, 100, budget, 0)
    return {
        **cell.identity(),
        "size": budget,
        "settings_id": settings_id,
        "attempt": attempt,
        "n_rows": n_rows,
        "round": round_,
        "train_size": 100 * round_,
        "accuracy": 0.5,
    }


def test_results_file_survives_torn_lines_and_partial_cells(tmp_path: Path) -> None:
    path = tmp_path / "cells.jsonl"
    append_rows(path, [_row("a", r, 3) for r in range(3)])
    with path.open("a") as handle:  # a crash in the middle of the next cell's write
        handle.write(json.dumps(_row("b", 0, 3)) + "\n" + json.dumps(_row("b", 1, 3))[:25])
    assert len(read_rows(path)) == 4
    assert list(complete_cells(read_rows(path))) == [("s1", _row("a", 0, 3)["cell_id"])]
    append_rows(path, [_row("c", r, 2, settings_id="s2") for r in range(2)])  # starts on a fresh line
    assert len(read_rows(path)) == 6 and len(complete_cells(read_rows(path))) == 2


def test_results_never_mix_settings_and_longer_runs_cover_shorter() -> None:
    cells = complete_cells(
        [_row("a", r, 4, budget=300) for r in range(4)]
        + [_row("b", r, 7, settings_id="old", budget=600) for r in range(7)]
    )
    results = Results(cells, {"mnist": {"settings_id": "s1"}})
    assert results.covers("s1", _row("a", 0, 1)["share_key"], 300)
    assert not results.covers("s1", _row("a", 0, 1)["share_key"], 600)  # only the other settings have it
    shorter = StealCell("mnist", "entropy", "random", 100, 100, 200, 0)
    rows = results.rows_for(shorter)
    assert rows is not None and {r["attempt"] for r in rows} == {"a"}
    assert results.rows_for(StealCell("mnist", "entropy", "random", 100, 100, 600, 0)) is None


def test_stop_point_replays_the_rule() -> None:
    entropies = [None, 1.0, 0.7, 0.65, 0.645, None]
    rows = [{"round": i, "train_size": 100 * i, "batch_entropy": h} for i, h in enumerate(entropies)]
    assert stop_point(rows, 0.05) == (rows[4], True)  # |0.7 - 0.65| <= 0.05 once round 3 is known
    assert stop_point(rows, 0.01) == (rows[5], True)
    assert stop_point(rows, 0.001) == (rows[5], False)  # never fires: the pool ran out
    assert stop_point(rows, 0.05, patience=2) == (rows[5], True)  # 0.05 then 0.005: two in a row
    assert stop_point(rows, 0.01, patience=2) == (rows[5], False)  # 0.3, 0.05, 0.005: only one in a row


def test_study_numbers_where_the_grid_matches_the_study() -> None:
    study = Scope("mnist", GridParams(), 60_000)
    tiny = Scope("mnist", TINY, 600)
    seeding, stopping = EXPERIMENTS["seeding"].study, EXPERIMENTS["stopping"].study
    assert seeding is not None and stopping is not None
    assert seeding(study, {"seeding": "random", "seed_size": 1000}) == {"study_accuracy_pct": 82.0}
    assert seeding(study, {"seeding": "pca-kmeans:10", "seed_size": 1000}) == {}
    assert seeding(tiny, {"seeding": "random", "seed_size": 1000}) == {}
    fashion = Scope("fashion-mnist", GridParams(), 60_000)
    assert stopping(fashion, {"patience": 1, "alpha": 0.1}) == {
        "study_queries_at_stop_min": 43000.0,
        "study_queries_at_stop_max": 45000.0,
        "study_accuracy_at_stop_pct_min": 55.9,
        "study_accuracy_at_stop_pct_max": 59.1,
    }
    assert stopping(fashion, {"patience": 3, "alpha": 0.1}) == {}  # the study measured its own rule only
