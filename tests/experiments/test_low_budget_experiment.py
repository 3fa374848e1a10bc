"""The low-budget experiment as data: its cells, seeds, settings and points (no training)."""

from __future__ import annotations

from typing import Any, cast

from activethief.experiments import GridParams, Results, Scope, plan_grid, resolve_experiments
from activethief.experiments.low_budget import VARIANTS, LowBudgetCell, low_budget_cells, low_budget_points
from activethief.steal import DEFAULT_FIT
from activethief.steal.config import LOW_BUDGET_FIT

SCOPE = Scope("mnist", GridParams(repeats=2), 60_000)


def test_one_cell_per_variant_and_repeat_with_the_variants_settings() -> None:
    cells = [c for c in low_budget_cells(SCOPE) if isinstance(c, LowBudgetCell)]
    assert len(cells) == len(VARIANTS) * 2 == len({c.share_key for c in cells})
    by_name = {(c.variant, c.repeat): c for c in cells}
    low = by_name["low-budget", 0].config(SCOPE.params)
    assert low.fit == LOW_BUDGET_FIT and low.batch_size == 100 and low.budget == 2000 and low.warm_start
    assert by_name["low-budget, random", 0].config(SCOPE.params).strategy == "random"
    default = by_name["default, rounds of 100", 1].config(SCOPE.params)
    assert default.fit == DEFAULT_FIT and default.batch_size == 100
    # Every variant of a repeat starts from the same seed; repeats differ.
    assert len({c.seed(0) for c in cells if c.repeat == 0}) == 1
    assert by_name["low-budget", 0].seed(0) != by_name["low-budget", 1].seed(0)
    assert by_name["low-budget", 0].config(SCOPE.params).seed == by_name["low-budget", 0].seed(0)


def test_it_runs_by_name_only_and_shares_nothing_with_the_study() -> None:
    assert all(e.name != "low-budget" for e in resolve_experiments("all"))
    both = plan_grid(resolve_experiments("all,low-budget"), ["mnist"], GridParams(), {"mnist": 60_000})
    study = plan_grid(resolve_experiments("all"), ["mnist"], GridParams(), {"mnist": 60_000})
    assert len(both.tasks) == len(study.tasks) + len(VARIANTS) * GridParams().repeats


class _Rows:
    def __init__(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        self.rows = rows

    def rows_for(self, task: Any) -> list[dict[str, Any]] | None:
        return self.rows.get(task.share_key)


def test_points_are_every_trained_round_of_each_finished_cell() -> None:
    cell = next(c for c in low_budget_cells(SCOPE) if isinstance(c, LowBudgetCell))
    round_ = {
        "agreement": 0.5,
        "accuracy": 0.25,
        "seconds_train": 1.0,
        "seconds_select": 0.5,
        "seconds_query": 0.5,
        "train_steps": 300,
    }
    rows = [{**round_, "train_size": n} for n in (0, 100, 200)]
    points = low_budget_points(cast(Results, _Rows({cell.share_key: rows})), SCOPE)
    assert [p["queries"] for p in points] == [100, 200]
    assert points[0] == {
        "variant": cell.variant,
        "queries": 100,
        "repeat": cell.repeat,
        "agreement_pct": 50.0,
        "accuracy_pct": 25.0,
        "train_steps": 300.0,
        "seconds": 2.0,
    }
