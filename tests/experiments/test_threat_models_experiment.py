"""The threat-models experiment: its cells as data, and a few real cells on a tiny grid."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np
from experiment_helpers import TINY

from activethief.experiments import GridParams, Results, Scope, plan_grid, resolve_experiments
from activethief.experiments.inputs import InputSpec, load_inputs
from activethief.experiments.report import summarise
from activethief.experiments.threat_models import (
    DELTAS,
    THREATS,
    HonestClientsTask,
    Threat,
    ThreatCell,
    prada_notes,
    threat_cells,
    threat_points,
)

SCOPE = Scope("mnist", GridParams(repeats=2), 60_000)


def _steal_cells(scope: Scope) -> list[ThreatCell]:
    return [c for c in threat_cells(scope) if isinstance(c, ThreatCell)]


def test_one_cell_per_threat_and_repeat_and_one_honest_task() -> None:
    tasks = threat_cells(SCOPE)
    cells = _steal_cells(SCOPE)
    assert len(cells) == len(THREATS) * 2 == len({c.share_key for c in cells})
    assert [t for t in tasks if isinstance(t, HonestClientsTask)] == [HonestClientsTask("mnist")]
    assert all(c.budget == 10_000 and c.batch_size == 1000 for c in cells)
    # The modes and defences of a repeat start from the seed of their undefended in-domain run.
    plain = next(c for c in cells if c.threat == Threat() and c.repeat == 0)
    same_start = [c for c in cells if (c.pool, c.strategy, c.repeat) == ("in-domain", "entropy+kcenter", 0)]
    assert len(same_start) > 5 and {c.seed(0) for c in same_start} == {plain.seed(0)}
    assert plain.config(SCOPE.params).seed == plain.seed(0) != plain.seed(1)
    assert {c.seed(0) for c in cells if c.repeat == 1}.isdisjoint({plain.seed(0)})


def test_it_runs_by_name_only() -> None:
    assert all(e.name != "threat-models" for e in resolve_experiments("all"))
    plan = plan_grid(resolve_experiments("threat-models"), ["mnist"], SCOPE.params, {"mnist": 60_000})
    assert len(plan.tasks) == len(THREATS) * 2 + 1


class _Rows:
    def __init__(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        self.rows = rows

    def rows_for(self, task: Any) -> list[dict[str, Any]] | None:
        return self.rows.get(task.share_key)


def test_points_and_the_prada_table() -> None:
    scope = Scope("mnist", GridParams(repeats=1), 60_000)
    cell = next(c for c in _steal_cells(scope) if c.threat == Threat(pool="other", strategy="random"))
    verdicts = {f"prada_{d}": (1500 if d == DELTAS[-1] else None) for d in DELTAS}
    rows = [
        {"train_size": n, "agreement": 0.5, "accuracy": 0.25, "defended_accuracy": 0.9, **verdicts}
        for n in (1000, 2000)
    ]
    honest = HonestClientsTask("mnist")
    clients = [
        {"client": 0, "queries": 2000, **{f"prada_{d}": 10 for d in DELTAS}},
        {"client": 1, "queries": 2000, **{f"prada_{d}": None for d in DELTAS}},
    ]
    results = cast(Results, _Rows({cell.share_key: rows, honest.share_key: clients}))
    points = threat_points(results, scope)
    first = points[0]
    assert (first["pool"], first["strategy"], first["queries"], first["agreement_pct"]) == (
        "other",
        "random",
        1000,
        50.0,
    )
    # Flagged at 1,500 queries: not yet at 1,000, flagged at 2,000.
    assert [p[f"prada_flagged_{DELTAS[-1]}_pct"] for p in points[:2]] == [0.0, 100.0]
    assert [p["strategy"] for p in points[2:]] == ["honest client"] * 2
    table = prada_notes(
        summarise(
            [{"dataset": "mnist", **p} for p in points],
            ("pool", "mode", "defence", "counter", "strategy", "queries"),
        ),
        scope.params,
    )
    assert "| mnist | other | random | not flagged in 2,000 | not flagged in 2,000 | 1,500 |" in table
    assert "50% of 2 clients flagged" in table


def _inputs(target_dir: Path) -> Any:
    spec = InputSpec("mnist", str(target_dir / "mnist-cnn2.pt"), pool_size=TINY.pool_size, test_size=200)
    return load_inputs(spec, 1)


def test_defended_and_out_of_domain_cells_steal_and_record_prada(target_dir: Path) -> None:
    inputs = _inputs(target_dir)
    wanted = [
        Threat(defence="reverse-sigmoid:0.7"),
        Threat(defence="reverse-sigmoid:0.7", counter="argmax"),
        Threat(pool="noise", strategy="random"),
    ]
    cells = [ThreatCell.make("mnist", t, TINY, 200, 0) for t in wanted]
    rows = [cell.run(inputs, TINY, None) for cell in cells]
    for cell_rows in rows:
        assert [r["train_size"] for r in cell_rows][-1] == 200
        assert all(set(r) >= {f"prada_{d}" for d in DELTAS} | {"defended_accuracy"} for r in cell_rows)
    # Reverse Sigmoid keeps the top class here, so the argmax counter trains on the same labels the
    # undefended target gives, and the defended API is as accurate as the target on these images.
    assert rows[0][-1]["defended_accuracy"] == rows[1][-1]["defended_accuracy"]
    assert rows[0][-1]["defended_accuracy"] == np.mean(inputs.target_labels == inputs.test_y)
    assert rows[2][-1]["agreement"] is not None


def test_honest_clients_are_replayed_without_queries(target_dir: Path) -> None:
    inputs = _inputs(target_dir)
    task = HonestClientsTask("mnist", clients=2, queries=150)
    rows = task.run(inputs, TINY, None)
    assert [r["client"] for r in rows] == [0, 1] and all(r["queries"] == 150 for r in rows)
    assert all(r[f"prada_{d}"] is None or 1 <= r[f"prada_{d}"] <= 150 for r in rows for d in DELTAS)
