"""The study's experiments, one small definition each: the cells a dataset needs and a view over them.

Sharing falls out of the cell design (see `cells.py`): seed-only cells use the `entropy` strategy, so the
seeding experiment's random cells are the first round of the seed-size runs, whose 1k run is the
strategies experiment's entropy run cut at 10k, which in turn is a prefix of the one whole-pool entropy
trajectory from which the stopping experiment reads every alpha's stop point after the fact.
"""

from __future__ import annotations

from typing import Any

from activethief.experiments.baseline import study_accuracy, study_stopping
from activethief.experiments.cells import StealCell
from activethief.experiments.registry import Experiment, FigureSpec, Scope, register_experiment
from activethief.experiments.store import Results
from activethief.stopping import EntropyChange

STUDY_POOL = 60_000

UNCERTAINTY = ("random", "least-confidence", "margin", "entropy")
SINGLE = ("random", "entropy", "uniform", "kcenter")
COMBINED = ("random", "entropy", "entropy+kcenter", "entropy+uniform", "entropy+kcenter+uniform")


def round_metrics(row: dict[str, Any], prefix: str = "", suffix: str = "_pct") -> dict[str, float | None]:
    """Accuracy and agreement of a round row, in percent."""
    return {
        f"{prefix}{name}{suffix}": None if row.get(name) is None else 100.0 * float(row[name])
        for name in ("accuracy", "agreement")
    }


def _row_at(rows: list[dict[str, Any]] | None, train_size: int) -> dict[str, Any] | None:
    """The round whose substitute was trained on exactly `train_size` answers."""
    for row in rows or []:
        if int(row["train_size"]) == train_size:
            return row
    return None


def _study_row(figure: str, dataset: str, series: str, x: int) -> dict[str, float]:
    value = study_accuracy().get((figure, dataset, series, x))
    return {} if value is None else {"study_accuracy_pct": value}


def _is_study_setting(scope: Scope) -> bool:
    """Whether the grid matches the study's pool and batch size, so its numbers are a fair baseline."""
    return scope.pool_size == STUDY_POOL and scope.params.batch_size == 1000


# --- seeding: accuracy after training on the seed alone ----------------------------------------------


def seeding_cells(scope: Scope) -> list[StealCell]:
    p = scope.params
    return [
        StealCell(scope.dataset, p.canonical_strategy, seeding, n, p.batch_size, n, r)
        for seeding in p.seedings
        for n in p.seed_sizes
        for r in range(p.repeats)
    ]


def seeding_points(results: Results, scope: Scope) -> list[dict[str, Any]]:
    points = []
    for cell in seeding_cells(scope):
        row = _row_at(results.rows_for(cell), cell.seed_size)
        if row is not None:
            points.append(
                {
                    "seeding": cell.seeding,
                    "seed_size": cell.seed_size,
                    "repeat": cell.repeat,
                    **round_metrics(row),
                }
            )
    return points


def seeding_study(scope: Scope, row: dict[str, Any]) -> dict[str, float]:
    if not _is_study_setting(scope):
        return {}
    return _study_row("fig2", scope.dataset, row["seeding"], int(row["seed_size"]))


# --- strategies: accuracy over queries for every strategy ----------------------------------------------


def strategies_cells(scope: Scope) -> list[StealCell]:
    p = scope.params
    return [
        StealCell(scope.dataset, strategy, "random", p.seed_size, p.batch_size, p.strategies_budget, r)
        for strategy in p.strategies
        for r in range(p.repeats)
    ]


def strategies_points(results: Results, scope: Scope) -> list[dict[str, Any]]:
    points = []
    for cell in strategies_cells(scope):
        for row in results.rows_for(cell) or []:
            if 0 < int(row["train_size"]) <= cell.budget:
                points.append(
                    {
                        "strategy": cell.strategy,
                        "queries": int(row["train_size"]),
                        "repeat": cell.repeat,
                        **round_metrics(row),
                    }
                )
    return points


def strategies_study(scope: Scope, row: dict[str, Any]) -> dict[str, float]:
    if not _is_study_setting(scope):
        return {}
    return _study_row("fig3-5", scope.dataset, row["strategy"], int(row["queries"]))


# --- seed-size: entropy to a fixed budget after random seeds of several sizes --------------------------


def seed_size_cells(scope: Scope) -> list[StealCell]:
    p = scope.params
    return [
        StealCell(scope.dataset, p.canonical_strategy, "random", n, p.batch_size, p.seed_size_budget, r)
        for n in p.seed_sizes
        for r in range(p.repeats)
    ]


def seed_size_points(results: Results, scope: Scope) -> list[dict[str, Any]]:
    points = []
    for cell in seed_size_cells(scope):
        row = _row_at(results.rows_for(cell), cell.budget)
        if row is not None:
            points.append(
                {
                    "seed_size": cell.seed_size,
                    "queries": cell.budget,
                    "repeat": cell.repeat,
                    **round_metrics(row),
                }
            )
    return points


def seed_size_study(scope: Scope, row: dict[str, Any]) -> dict[str, float]:
    if not _is_study_setting(scope) or int(row["queries"]) != 10_000:
        return {}
    return _study_row("fig6", scope.dataset, "entropy-to-10k", int(row["seed_size"]))


# --- stopping: where the entropy rule would stop, read off one whole-pool trajectory --------------------


def stopping_cells(scope: Scope) -> list[StealCell]:
    p = scope.params
    budget = p.stopping_budget or scope.pool_size
    return [
        StealCell(scope.dataset, p.canonical_strategy, "random", p.seed_size, p.batch_size, budget, r)
        for r in range(p.repeats)
    ]


def stop_point(rows: list[dict[str, Any]], alpha: float, patience: int = 1) -> tuple[dict[str, Any], bool]:
    """The round at which `steal(..., stop="entropy:ALPHA[:PATIENCE]")` would have stopped, and whether
    it did.

    Replays the loop's own check: before selecting in round i, stop if the rule holds on the mean batch
    entropies of rounds 1..i-1. Same seed, so the same run up to that round. Returns the last round
    (the pool or budget ran out) and False when the rule never fires.
    """
    rule = EntropyChange(alpha, patience)
    entropies: list[float] = []
    for row in rows:
        if rule.should_stop(entropies):
            return row, True
        if int(row["round"]) > 0 and row.get("batch_entropy") is not None:
            entropies.append(float(row["batch_entropy"]))
    return rows[-1], False


def stopping_points(results: Results, scope: Scope) -> list[dict[str, Any]]:
    points = []
    for cell in stopping_cells(scope):
        rows = results.rows_for(cell)
        if not rows:
            continue
        rows = [r for r in rows if int(r["train_size"]) <= cell.budget]
        full = rows[-1]
        for patience in scope.params.patiences:
            for alpha in scope.params.alphas:
                row, stopped = stop_point(rows, alpha, patience)
                points.append(
                    {
                        "patience": patience,
                        "alpha": alpha,
                        "repeat": cell.repeat,
                        "queries_at_stop": int(row["train_size"]),
                        **round_metrics(row, suffix="_at_stop_pct"),
                        "stopped_early": float(stopped),
                        **round_metrics(full, suffix="_full_pool_pct"),
                    }
                )
    return points


def stopping_study(scope: Scope, row: dict[str, Any]) -> dict[str, float]:
    ranges = study_stopping().get((scope.dataset, float(row["alpha"])))
    if ranges is None or int(row["patience"]) != 1 or not _is_study_setting(scope):  # the study's rule only
        return {}
    return {
        "study_queries_at_stop_min": ranges["queries_at_stop_min"],
        "study_queries_at_stop_max": ranges["queries_at_stop_max"],
        "study_accuracy_at_stop_pct_min": ranges["accuracy_pct_min"],
        "study_accuracy_at_stop_pct_max": ranges["accuracy_pct_max"],
    }


# --- full-data: the substitute trained on every pool answer, and the target itself ----------------------


def full_data_cells(scope: Scope) -> list[StealCell]:
    p = scope.params
    n = scope.pool_size
    return [
        StealCell(scope.dataset, p.canonical_strategy, "random", n, p.batch_size, n, r)
        for r in range(p.repeats)
    ]


def full_data_points(results: Results, scope: Scope) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = []
    for cell in full_data_cells(scope):
        row = _row_at(results.rows_for(cell), cell.budget)
        if row is not None:
            points.append(
                {"model": "substitute", "queries": cell.budget, "repeat": cell.repeat, **round_metrics(row)}
            )
    target = results.targets.get(scope.dataset, {})
    if target.get("test_accuracy") is not None:
        points.append(
            {
                "model": "target",
                "queries": 0,
                "repeat": 0,
                "accuracy_pct": 100.0 * float(target["test_accuracy"]),
                "agreement_pct": 100.0,
            }
        )
    return points


def full_data_study(scope: Scope, row: dict[str, Any]) -> dict[str, float]:
    if row["model"] != "substitute" or scope.pool_size != STUDY_POOL:
        return {}
    return _study_row("full-data", scope.dataset, "all-60k", STUDY_POOL)


register_experiment(
    Experiment(
        name="seeding",
        title="Seeding: accuracy after training on the seed alone (random vs k-means seeding)",
        tasks=seeding_cells,
        points=seeding_points,
        keys=("seeding", "seed_size"),
        study=seeding_study,
        figures=(
            FigureSpec(
                "fig2_seeding.png",
                "Seed round only: accuracy per seed size and seeding",
                "bars",
                x="seed_size",
                series="seeding",
                xlabel="seed size",
            ),
        ),
    )
)
register_experiment(
    Experiment(
        name="strategies",
        title="Subset-selection strategies: accuracy over queries (random seed, fixed batches)",
        tasks=strategies_cells,
        points=strategies_points,
        keys=("strategy", "queries"),
        study=strategies_study,
        figures=(
            FigureSpec(
                "fig3_uncertainty.png",
                "Uncertainty strategies vs random",
                "lines",
                x="queries",
                series="strategy",
                only=UNCERTAINTY,
                xlabel="queries",
            ),
            FigureSpec(
                "fig4_entropy_uniform_kcenter.png",
                "Entropy, uniform and k-center vs random",
                "lines",
                x="queries",
                series="strategy",
                only=SINGLE,
                xlabel="queries",
            ),
            FigureSpec(
                "fig5_combinations.png",
                "Combinations of entropy with k-center and uniform",
                "lines",
                x="queries",
                series="strategy",
                only=COMBINED,
                xlabel="queries",
            ),
        ),
        in_table=lambda row, params: int(row["queries"]) in params.checkpoints,
    )
)
register_experiment(
    Experiment(
        name="seed-size",
        title="Seed size: entropy to a fixed budget after random seeds of several sizes",
        tasks=seed_size_cells,
        points=seed_size_points,
        keys=("seed_size", "queries"),
        study=seed_size_study,
        figures=(
            FigureSpec(
                "fig6_seed_size.png",
                "Entropy to the budget after random seeds",
                "bars",
                x="seed_size",
                series="",
                xlabel="seed size",
            ),
        ),
    )
)
register_experiment(
    Experiment(
        name="stopping",
        title=(
            "Entropy stopping rule: where |H(i-1) - H(i)| <= alpha stops (patience: that many such changes "
            "in a row; 1 is the study's rule), and the accuracy there"
        ),
        tasks=stopping_cells,
        points=stopping_points,
        keys=("patience", "alpha"),
        study=stopping_study,
        figures=(
            FigureSpec(
                "fig7_stopping.png",
                "Entropy stopping rule: queries at stop vs accuracy",
                "stopping",
                x="queries_at_stop",
                series="alpha",
                y="accuracy_at_stop_pct",
                xlabel="queries at stop",
                rows="patience",
            ),
        ),
    )
)
register_experiment(
    Experiment(
        name="full-data",
        title="Ceiling: the substitute trained on every pool answer, and the target itself",
        tasks=full_data_cells,
        points=full_data_points,
        keys=("model", "queries"),
        study=full_data_study,
    )
)
