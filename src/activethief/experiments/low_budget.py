"""The low-budget experiment: agreement at a few hundred to a few thousand queries, and what each part of
the `low-budget` preset earns (its training, semi-supervised training, selection, seeding).

Each variant is the preset with some fields replaced (`VARIANTS`, also what `benchmarks/low_budget.py`
measures against another target), stolen to `BUDGET` queries in the preset's rounds; every round's
history row is a point, so one run gives every smaller budget.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from activethief.experiments.cells import StealCell, derive_seed
from activethief.experiments.definitions import round_metrics
from activethief.experiments.grid import GridParams
from activethief.experiments.registry import Experiment, FigureSpec, Scope, register_experiment
from activethief.experiments.store import Results
from activethief.steal import StealConfig
from activethief.steal.config import PRESETS
from activethief.training import SemiConfig

BUDGET = 2000
SHOWN = (200, 500, 1000, 2000)  # the budgets the Markdown table shows

_LOW_FIT = PRESETS["low-budget"]["fit"]

# name -> (preset, the fields that replace the preset's); budget, seed and substitute come per cell.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "low-budget": ("low-budget", {}),
    "low-budget, random": ("low-budget", {"strategy": "random"}),
    "low-budget, no augmentation": ("low-budget", {"fit": replace(_LOW_FIT, augment=0)}),
    "low-budget, rounds of 200, 1,500 fresh steps": (
        "low-budget",
        {"batch_size": 200, "warm_start": False, "fit": replace(_LOW_FIT, warm_steps=0)},
    ),
    "low-budget, pseudo-labels": ("low-budget", {"fit": replace(_LOW_FIT, semi=SemiConfig(method="pseudo"))}),
    "low-budget, fixmatch": ("low-budget", {"fit": replace(_LOW_FIT, semi=SemiConfig())}),
    "default, rounds of 100": ("default", {"batch_size": 100, "strategy": "entropy+kcenter"}),
    "default, random, rounds of 100": ("default", {"batch_size": 100, "strategy": "random"}),
}


def variant_config(variant: str, **settings: Any) -> StealConfig:
    """The variant's steal settings with `settings` (budget, seed, substitute, ...) added."""
    preset, fields = VARIANTS[variant]
    return StealConfig.preset(preset, **fields, **settings)


@dataclass(frozen=True, order=True)
class LowBudgetCell(StealCell):
    """One steal with a variant of the low-budget preset (its strategy, seeding and batch sizes are the
    variant's, filled in by `make`, so the base cell's cost model and run apply unchanged)."""

    variant: str = "low-budget"

    @classmethod
    def make(cls, dataset: str, variant: str, budget: int, repeat: int) -> LowBudgetCell:
        config = variant_config(variant, budget=budget)
        return cls(
            dataset,
            config.strategy,
            config.seeding,
            config.first_batch,
            config.batch_size,
            budget,
            repeat,
            variant,
        )

    @property
    def share_key(self) -> str:
        return f"{self.dataset}|low-budget|{self.variant}|r{self.repeat}"

    def seed(self, base_seed: int) -> int:
        """The run seed: per dataset and repeat only, so every variant of a repeat starts alike."""
        return derive_seed(base_seed, "low-budget", self.dataset, self.repeat)

    def identity(self) -> dict[str, Any]:
        return {"kind": "low-budget", "cell_id": self.cell_id, "share_key": self.share_key, **asdict(self)}

    def config(self, params: GridParams) -> StealConfig:
        return variant_config(
            self.variant, budget=self.budget, seed=self.seed(params.base_seed), substitute=params.substitute
        )

    def snapshot_budgets(self, params: GridParams) -> tuple[int, ...]:
        return ()


def low_budget_cells(scope: Scope) -> list[StealCell]:
    return [
        LowBudgetCell.make(scope.dataset, variant, min(BUDGET, scope.pool_size), r)
        for variant in VARIANTS
        for r in range(scope.params.repeats)
    ]


def low_budget_points(results: Results, scope: Scope) -> list[dict[str, Any]]:
    points = []
    for cell in low_budget_cells(scope):
        assert isinstance(cell, LowBudgetCell)
        for row in results.rows_for(cell) or []:
            if 0 < int(row["train_size"]) <= cell.budget:
                points.append(
                    {
                        "variant": cell.variant,
                        "queries": int(row["train_size"]),
                        "repeat": cell.repeat,
                        **round_metrics(row),
                        "train_steps": float(row.get("train_steps", 0)),
                        "seconds": float(row["seconds_train"] + row["seconds_select"] + row["seconds_query"]),
                    }
                )
    return points


register_experiment(
    Experiment(
        name="low-budget",
        title="Low budget: agreement at 200-2,000 queries, the low-budget preset and its ablations",
        tasks=low_budget_cells,
        points=low_budget_points,
        keys=("variant", "queries"),
        figures=(
            FigureSpec(
                "fig10_low_budget.png",
                "Low budget: agreement with the target vs queries",
                "lines",
                x="queries",
                series="variant",
                y="agreement_pct",
                xlabel="queries",
                ylabel="agreement with the target (%)",
            ),
        ),
        in_table=lambda row, params: int(row["queries"]) in SHOWN,
        in_all=False,
    )
)
