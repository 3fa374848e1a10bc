"""The attack-budget experiment: its cells as data, points from hand-made rows, and one real tiny cell."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from experiment_helpers import TINY

from activethief.experiments import QUICK, GridParams, Results, Scope, plan_grid, resolve_experiments
from activethief.experiments.attack_budget import (
    SETTINGS,
    AttackBudgetCell,
    attack_budget_cells,
    attack_budget_points,
)
from activethief.experiments.cells import StealCell
from activethief.experiments.inputs import InputSpec, load_inputs

SCOPE = Scope("mnist", GridParams(repeats=2), 60_000)


def test_one_cell_per_repeat_on_the_strategies_trajectory() -> None:
    cells = attack_budget_cells(SCOPE)
    assert [c.repeat for c in cells] == [0, 1] and len({c.share_key for c in cells}) == 2
    assert all(
        (c.budget, c.images, c.strategy, c.batch_size) == (5000, 1000, "entropy+kcenter", 1000) for c in cells
    )
    # The same seed as the strategies experiment's entropy+kcenter trajectory, but a share key of its own,
    # so the planner never takes a plain steal cell's rows (which have no attack) for this cell's.
    plain = StealCell("mnist", "entropy+kcenter", "random", 1000, 1000, 5000, 0)
    assert cells[0].seed(0) == plain.seed(0) != cells[1].seed(0)
    assert cells[0].config(SCOPE.params).seed == cells[0].seed(0)
    assert cells[0].share_key != plain.share_key and cells[0].identity()["kind"] == "attack-budget"
    # Small grids: the steal budget is cut to the pool and the images to the test slice.
    quick = attack_budget_cells(Scope("mnist", QUICK, 1000))[0]
    tiny = attack_budget_cells(Scope("mnist", TINY, 600))[0]
    assert (quick.budget, quick.images, quick.batch_size) == (1000, 1000, 100)
    assert (tiny.budget, tiny.images) == (600, 200)


def test_it_runs_by_name_only() -> None:
    assert all(e.name != "attack-budget" for e in resolve_experiments("all"))
    plan = plan_grid(resolve_experiments("attack-budget"), ["mnist"], SCOPE.params, {"mnist": 60_000})
    assert len(plan.tasks) == 2


class _Rows:
    def __init__(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        self.rows = rows

    def rows_for(self, task: Any) -> list[dict[str, Any]] | None:
        return self.rows.get(task.share_key)


def test_points_are_one_per_setting_and_budget() -> None:
    scope = Scope("mnist", GridParams(repeats=1), 60_000)
    cell = attack_budget_cells(scope)[0]
    curve = [
        {"queries_per_image": 1, "success_rate": 0.0, "mean_queries": 1.0},
        {"queries_per_image": 10, "success_rate": 0.5, "mean_queries": 4.0},
    ]
    rows = [
        {"name": "a", "steal_queries": 5000, "curve": curve},
        {"name": "b", "steal_queries": 5000, "curve": curve[:1]},
    ]
    points = attack_budget_points(cast(Results, _Rows({cell.share_key: rows})), scope)
    assert [(p["setting"], p["queries_per_image"]) for p in points] == [("a", 1), ("a", 10), ("b", 1)]
    assert points[1] == {
        "setting": "a",
        "queries_per_image": 10,
        "repeat": 0,
        "success_pct": 50.0,
        "mean_queries": 4.0,
        "steal_queries": 5000,
        "total_for_1000": 5000 + 8000.0,  # 4 queries per image, one image in two fooled
    }
    assert points[0]["total_for_1000"] is None  # nothing fooled: no finite total


def _check(rows: list[dict[str, Any]]) -> None:
    assert [r["name"] for r in rows] == [s.name for s in SETTINGS]
    for row, setting in zip(rows, SETTINGS, strict=True):
        queries = np.array(row["per_image_queries"])
        assert row["n_images"] == len(queries) == 10 and row["steal_queries"] == 200
        assert queries.min() >= 1 and queries.max() <= setting.max_queries
        # The oracle counted exactly what the row says was spent.
        assert row["oracle_queries"] == row["total_queries"] == queries.sum()
        assert row["success_rate"] == np.mean(row["per_image_success"])
        assert row["curve"][-1]["success_rate"] == row["success_rate"]
        assert max(c["queries_per_image"] for c in row["curve"]) <= setting.max_queries
    assert rows[-1]["per_image_queries"] == [1] * 10 and rows[-1]["continuation_used"] == "none"


def test_a_tiny_cell_steals_attacks_within_every_budget_and_resumes(
    target_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = InputSpec("mnist", str(target_dir / "mnist-cnn2.pt"), pool_size=TINY.pool_size, test_size=200)
    inputs = load_inputs(spec, 1)
    assert np.sum(inputs.target_labels == inputs.test_y) >= 10
    cell = AttackBudgetCell.make("mnist", TINY, 200, 10, 0)
    rows = cell.run(inputs, TINY, tmp_path)
    _check(rows)

    # Resuming a finished steal loads its substitute instead of stealing again; finished settings are read
    # back, and a missing one is attacked again on the loaded substitute.
    def no_steal(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a finished steal must not run again")

    monkeypatch.setattr(AttackBudgetCell, "run_steal", no_steal)
    assert cell.run(inputs, TINY, tmp_path) == json.loads(json.dumps(rows))
    (tmp_path / f"setting-{len(SETTINGS) - 1}.json").unlink()
    again = cell.run(inputs, TINY, tmp_path)
    _check(again)
    assert again[:-1] == json.loads(json.dumps(rows[:-1]))
