"""The threat-models experiment: stealing when the thief's data, the answers or the target's owner are
not on the thief's side, and whether the owner's PRADA monitor would notice (issue 15).

Every threat is one steal of the experiment's target (`Threat`: which pool, which output mode the API
answers in, which defence the owner applies, which counter the thief uses, which strategy), stolen to
`BUDGET` queries in the grid's rounds; every round's row is a point, so one run gives the whole curve.
Agreement is always measured against the target's own, undefended labels (the model being copied);
a defended cell also records the defended API's accuracy (what honest users pay for the defence).

PRADA (Juuti et al., EuroS&P 2019) runs offline on each cell's query stream: the pool images in the
order the oracle sent them (`Ledger.query_order`, so an interrupted and resumed cell sees the same
stream) and the class the API answered. Honest clients (test images in random order, one seeded
permutation each) give the false-positive rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from activethief.data import open_pool
from activethief.data.pools import Pool
from activethief.experiments.cells import PREDICT_COST, StealCell, derive_seed
from activethief.experiments.definitions import round_metrics
from activethief.experiments.grid import GridParams
from activethief.experiments.inputs import Inputs
from activethief.experiments.registry import Experiment, FigureSpec, Scope, register_experiment
from activethief.experiments.store import Results
from activethief.oracle.base import Backend, Oracle
from activethief.oracle.local import ModelBackend
from activethief.steal import steal
from activethief.steal.loop import first_images

BUDGET = 10_000
SHOWN = (1000, 2000, 5000, 10_000)  # the budgets the Markdown table shows
DELTAS = (0.9, 0.92, 0.95)  # PRADA thresholds on the Shapiro-Wilk statistic
HONEST_CLIENTS = 20
HONEST_QUERIES = 2000
IN_DOMAIN = "in-domain"
OTHER_DATASET = {"mnist": "fashion-mnist", "fashion-mnist": "mnist"}
MIX_IN, MIX_OUT = 1000, 59_000  # the mix pool: a small in-domain share, a large out-of-domain share


@dataclass(frozen=True, order=True)
class Threat:
    """One threat: the thief's pool, the API's output mode, the owner's defence, the thief's counter.

    `pool` is `in-domain` (the dataset's own training images), `other` (the other dataset's), `mix`
    (MIX_IN in-domain plus MIX_OUT other), `sklearn-digits` or `noise` (uniform noise, the floor).
    `counter` is `none` or `argmax` (the thief trains on the top class of every answer only, which
    undoes perturbations that keep it, such as Reverse Sigmoid's).
    """

    pool: str = IN_DOMAIN
    mode: str = "probs"
    defence: str = "none"
    counter: str = "none"
    strategy: str = "entropy+kcenter"


def _grid() -> tuple[Threat, ...]:
    """Every threat, the ones no other benchmark measures first (cells run in this order)."""
    defences = [
        Threat(defence=d, counter=c)
        for d in ("reverse-sigmoid:0.7", "misinformation:0.5", "noise:0.2")
        for c in ("none", "argmax")
    ]
    first = [
        Threat(),
        Threat("other"),
        Threat("other", strategy="random"),
        Threat(mode="label"),
        # Adaptive Misinformation is aimed at out-of-distribution queries: this is the thief it targets
        Threat("other", defence="misinformation:0.5"),
    ]
    modes = [Threat(mode=m) for m in ("topk:3", "round:1", "round:2")]
    pools = [Threat("mix"), Threat("sklearn-digits"), Threat("noise", strategy="random")]
    strategies = [
        Threat(pool, strategy=s)
        for pool in (IN_DOMAIN, "other")
        for s in ("random", "entropy", "kcenter")
        if Threat(pool, strategy=s) not in first
    ]
    return (*first, *defences, *modes, *pools, *strategies)


THREATS: tuple[Threat, ...] = _grid()


def pool_spec(pool: str, dataset: str) -> str:
    """What `data.open_pool` opens for a threat's pool on `dataset` (ConfigError-free: names are fixed)."""
    other = OTHER_DATASET.get(dataset, "fashion-mnist")
    specs = {
        "other": other,
        "mix": f"mix:{dataset}@{MIX_IN}+{other}@{MIX_OUT}",
        "sklearn-digits": "sklearn-digits",
        "noise": f"noise:uniform:{MIX_IN + MIX_OUT}",
    }
    return specs[pool]


@dataclass(frozen=True, order=True)
class ThreatCell(StealCell):
    """One steal under a threat; the seed depends on (dataset, pool, strategy, repeat) only, so the
    modes and defences of a repeat start from the same seed round as their undefended run."""

    pool: str = IN_DOMAIN
    mode: str = "probs"
    defence: str = "none"
    counter: str = "none"

    @classmethod
    def make(cls, dataset: str, threat: Threat, params: GridParams, budget: int, repeat: int) -> ThreatCell:
        return cls(
            dataset,
            threat.strategy,
            "random",
            params.seed_size,
            params.batch_size,
            budget,
            repeat,
            threat.pool,
            threat.mode,
            threat.defence,
            threat.counter,
        )

    @property
    def threat(self) -> Threat:
        return Threat(self.pool, self.mode, self.defence, self.counter, self.strategy)

    @property
    def share_key(self) -> str:
        return (
            f"{self.dataset}|threat|{self.pool}|{self.mode}|{self.defence}|{self.counter}|{self.strategy}"
            f"|s{self.seed_size}|b{self.batch_size}|r{self.repeat}"
        )

    def seed(self, base_seed: int) -> int:
        return derive_seed(base_seed, "threat-models", self.dataset, self.pool, self.strategy, self.repeat)

    def identity(self) -> dict[str, Any]:
        return {"kind": "threat-models", "cell_id": self.cell_id, "share_key": self.share_key, **asdict(self)}

    def snapshot_budgets(self, params: GridParams) -> tuple[int, ...]:
        return ()

    def open_pool(self, inputs: Inputs, params: GridParams) -> Pool | np.ndarray:
        """The thief's images: the dataset's own pool, or another pool of the target's shape (cut to the
        grid's pool size, like the dataset's own)."""
        if self.pool == IN_DOMAIN:
            return inputs.pool
        return first_images(
            open_pool(pool_spec(self.pool, self.dataset), inputs.input_shape), params.pool_size
        )

    def backend(self, inputs: Inputs) -> Backend:
        """The target as its owner deploys it: the model, behind the cell's defence (seeded per cell)."""
        plain = _target_backend(inputs)
        if self.defence == "none":
            return plain
        from activethief.oracle.defences import DefendedBackend

        return DefendedBackend(plain, self.defence, seed=self.seed(0))

    def api_accuracy(self, inputs: Inputs) -> float:
        """The deployed API's test accuracy (the top class of its answers): what honest users get. The
        owner's own model, asked in process, so no query of the thief's."""
        if self.defence == "none":
            return inputs.target_accuracy
        from activethief.oracle.defences import defended_accuracy

        return defended_accuracy(
            _target_backend(inputs), self.defence, inputs.test_x, inputs.test_y, self.seed(0)
        )

    def run(self, inputs: Inputs, params: GridParams, work_dir: Path | None) -> list[dict[str, Any]]:
        """Steal under the threat; every row also carries PRADA's verdicts on the stream and, for a
        defended target, the defended API's test accuracy."""
        pool = self.open_pool(inputs, params)
        backend = self.backend(inputs)
        oracle = Oracle(backend, mode="label" if self.counter == "argmax" else self.mode)
        result = steal(
            oracle,
            pool,
            self.config(params),
            test=(inputs.test_x, inputs.test_y),
            out=work_dir,
            resume=work_dir is not None,
            quiet=True,
            target_test_labels=inputs.target_labels,
        )
        extra = {**self.prada_verdicts(oracle, pool), "defended_accuracy": self.api_accuracy(inputs)}
        rows = [asdict(record) for record in result.history]
        for row in rows:
            row.update(extra, stopped_by=result.stopped_by, seed=self.seed(params.base_seed))
        oracle.close()
        return rows

    def prada_verdicts(self, oracle: Oracle, pool: Pool | np.ndarray) -> dict[str, int | None]:
        """Queries until PRADA flags this cell's stream, per δ (None: never, within the budget)."""
        from activethief.oracle.prada import replay

        order = oracle.ledger.query_order()
        keys, answers = oracle.answered()
        classes = answers[np.searchsorted(keys, order)].argmax(1)
        flagged = replay(np.asarray(pool[order], dtype=np.float32), classes, DELTAS)
        return {f"prada_{delta}": flagged[delta] for delta in DELTAS}


def _target_backend(inputs: Inputs) -> ModelBackend:
    return ModelBackend(inputs.target_model(), inputs.num_classes, input_shape=inputs.input_shape)


@dataclass(frozen=True, order=True)
class HonestClientsTask:
    """PRADA's false positives: HONEST_CLIENTS clients, each sending HONEST_QUERIES test images in its
    own seeded random order, answered with the target's labels."""

    dataset: str
    clients: int = HONEST_CLIENTS
    queries: int = HONEST_QUERIES

    @property
    def cell_id(self) -> str:
        return f"{self.share_key}|n{self.size}"

    @property
    def share_key(self) -> str:
        return f"{self.dataset}|prada-honest|c{self.clients}"

    @property
    def size(self) -> int:
        return self.queries

    def identity(self) -> dict[str, Any]:
        return {"kind": "prada-honest", "cell_id": self.cell_id, "share_key": self.share_key, **asdict(self)}

    def work(self, pool_size: int, params: GridParams) -> float:
        return float(self.clients * self.queries * PREDICT_COST)

    def run(self, inputs: Inputs, params: GridParams, work_dir: Path | None) -> list[dict[str, Any]]:
        from activethief.oracle.prada import replay

        rows = []
        count = min(self.queries, len(inputs.test_y))
        for client in range(self.clients):
            rng = np.random.default_rng(derive_seed(params.base_seed, "prada-honest", self.dataset, client))
            order = rng.permutation(len(inputs.test_y))[:count]
            flagged = replay(inputs.test_x[order], inputs.target_labels[order], DELTAS)
            rows.append({"client": client, "queries": count, **{f"prada_{d}": flagged[d] for d in DELTAS}})
        return rows


def threat_cells(scope: Scope) -> list[StealCell | HonestClientsTask]:
    budget = min(BUDGET, scope.pool_size)
    tasks: list[StealCell | HonestClientsTask] = [
        ThreatCell.make(scope.dataset, threat, scope.params, budget, r)
        for threat in THREATS
        for r in range(scope.params.repeats)
    ]
    return [*tasks, HonestClientsTask(scope.dataset)]


def _flag_metrics(row: dict[str, Any], queries: int) -> dict[str, float | None]:
    """Per δ: the queries until flagged (None: not flagged) and whether that happened by `queries` (%)."""
    metrics: dict[str, float | None] = {}
    for delta in DELTAS:
        at = row.get(f"prada_{delta}")
        metrics[f"prada_queries_{delta}"] = None if at is None else float(at)
        metrics[f"prada_flagged_{delta}_pct"] = 100.0 * float(at is not None and int(at) <= queries)
    return metrics


def threat_points(results: Results, scope: Scope) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = []
    for task in threat_cells(scope):
        rows = results.rows_for(task) or []
        if isinstance(task, HonestClientsTask):
            for row in rows:
                honest = {"pool": "test set (honest)", "mode": "-", "defence": "none", "counter": "none"}
                queries = int(row["queries"])
                points.append(
                    {**honest, "strategy": "honest client", "queries": queries, "repeat": int(row["client"])}
                    | _flag_metrics(row, queries)
                )
            continue
        assert isinstance(task, ThreatCell)
        for row in rows:
            queries = int(row["train_size"])
            if 0 < queries <= task.budget:
                points.append(
                    {**asdict(task.threat), "queries": queries, "repeat": task.repeat}
                    | round_metrics(row)
                    | {"defended_accuracy_pct": 100.0 * float(row["defended_accuracy"])}
                    | _flag_metrics(row, queries)
                )
    return points


def prada_notes(summary: Sequence[dict[str, Any]], params: GridParams) -> str:
    """The PRADA table: queries until flagged per (pool, strategy) at the largest budget, and the honest
    clients' false-positive rate, per δ."""
    header = ["dataset", "pool", "strategy", *(f"δ = {d}" for d in DELTAS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    last: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in summary:
        if row["mode"] in ("probs", "-") and row["defence"] == "none" and row["counter"] == "none":
            key = (row["dataset"], row["pool"], row["strategy"])
            if key not in last or row["queries"] > last[key]["queries"]:
                last[key] = row
    for (dataset, pool, strategy), row in sorted(last.items()):
        cells = []
        for delta in DELTAS:
            share = row.get(f"prada_flagged_{delta}_pct_mean")
            at = row.get(f"prada_queries_{delta}_mean")
            if strategy == "honest client":
                cells.append(f"{share:.0f}% of {row['n']} clients flagged" if share is not None else "-")
            else:
                cells.append(f"{at:,.0f}" if at is not None else f"not flagged in {row['queries']:,}")
        lines.append("| " + " | ".join([dataset, pool, strategy, *cells]) + " |")
    return (
        "PRADA (Juuti et al., 2019) on each steal's query stream: queries until flagged (mean over "
        "repeats that were flagged), and for honest clients the share flagged.\n\n" + "\n".join(lines)
    )


def _lines(
    file: str,
    title: str,
    series: str,
    where: tuple[tuple[str, Any], ...],
    columns: str = "",
    rows: str = "",
) -> FigureSpec:
    return FigureSpec(
        file,
        title,
        "lines",
        x="queries",
        series=series,
        y="agreement_pct",
        xlabel="queries",
        ylabel="agreement with the target (%)",
        where=where,
        columns=columns,
        rows=rows,
        legend="mean over repeats, band ± std (the study has no such grid)",
    )


register_experiment(
    Experiment(
        name="threat-models",
        title="Threat models: out-of-domain pools, reduced answers, defences, and PRADA",
        tasks=threat_cells,
        points=threat_points,
        keys=("pool", "mode", "defence", "counter", "strategy", "queries"),
        figures=(
            _lines(
                "fig11_threat_pools.png",
                "Thief data: agreement vs queries per pool",
                "pool",
                (("mode", "probs"), ("defence", "none")),
                rows="strategy",
            ),
            _lines(
                "fig12_threat_modes.png",
                "Reduced answers: agreement vs queries per output mode",
                "mode",
                (("pool", IN_DOMAIN), ("defence", "none"), ("strategy", "entropy+kcenter")),
            ),
            _lines(
                "fig13_threat_defences.png",
                "Defences: agreement vs queries, without and with the thief's argmax counter",
                "defence",
                (("pool", IN_DOMAIN), ("mode", "probs"), ("strategy", "entropy+kcenter")),
                columns="counter",
            ),
            _lines(
                "fig15_threat_defences_other.png",
                "Defences against a thief with out-of-domain data: agreement vs queries",
                "defence",
                (("pool", "other"), ("mode", "probs"), ("strategy", "entropy+kcenter")),
            ),
        ),
        in_table=lambda row, params: int(row["queries"]) in SHOWN or row["strategy"] == "honest client",
        notes=prada_notes,
        in_all=False,
    )
)
