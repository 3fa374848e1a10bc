"""The attack-budget experiment: how many target queries per image the hybrid attack needs to fool the
target, once a substitute has been stolen (issue 16).

Each cell steals once (entropy+kcenter to `STEAL_BUDGET` queries in the grid's rounds and training: the
strategies experiment's own trajectory and seed, under a share key of its own), then attacks the first
`IMAGES` test images the target classifies correctly (known for free: the experiment owns its target)
with `HybridAttack` in every `SETTINGS` entry. Each setting asks a fresh, counted `Oracle` over the
target in its output mode, so its rows say what an attacker would pay. The hybrid attack stops per
image at its first success, so `QueryAttackResult.curve` gives success at every smaller per-image
budget from one run; the row keeps the per-image queries too. Transfer-then-optimise is Suya et al.'s
hybrid attack (USENIX Security 2020).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from activethief import models
from activethief.attacks.hybrid import HybridAttack
from activethief.experiments.cells import PREDICT_COST, StealCell, derive_seed
from activethief.experiments.grid import GridParams
from activethief.experiments.inputs import Inputs
from activethief.experiments.registry import Experiment, FigureSpec, Scope, register_experiment
from activethief.experiments.store import Results
from activethief.files import write_text_atomic
from activethief.steal.rundir import SUBSTITUTE, SUMMARY

STEAL_BUDGET = 5000
STRATEGY = "entropy+kcenter"
IMAGES = 1000
CURVE = (1, 2, 5, 10, 20, 50, 100, 200, 300)  # per-image budgets Q of the success curve
SHOWN = (1, 20, 100, 200, 300)  # the budgets the Markdown table shows
ATTACK_STEP_COST = 0.2  # one substitute gradient step per image, in sample steps (as in `transfer`)


@dataclass(frozen=True)
class Setting:
    """One attack: radius in its norm ("inf" or "2"), goal (None: untargeted, or "least-likely"), the
    API's output mode and the per-image query budget; `continuation` "none" is pure transfer (one query
    per image)."""

    name: str
    eps: float
    target_class: str | None
    mode: str
    max_queries: int
    continuation: str = "auto"
    norm: str = "inf"

    def attack(self) -> HybridAttack:
        return HybridAttack(
            eps=self.eps,
            target_class=self.target_class,
            max_queries_per_image=self.max_queries,
            continuation=self.continuation,
            norm=self.norm,
        )


SETTINGS: tuple[Setting, ...] = (
    Setting("untargeted ε=0.2, probs", 0.2, None, "probs", 100),
    Setting("least-likely ε=0.3, probs", 0.3, "least-likely", "probs", 300),
    Setting("untargeted ε=0.2, label", 0.2, None, "label", 200),
    Setting("untargeted L2 ε=2.0, probs", 2.0, None, "probs", 100, norm="2"),
    Setting("transfer only ε=0.3", 0.3, None, "probs", 1, continuation="none"),
)


@dataclass(frozen=True, order=True)
class AttackBudgetCell(StealCell):
    """One steal (the base cell's trajectory, seed and checkpointing) and every setting's hybrid attack
    on its substitute, on the first `images` correctly classified test images."""

    images: int = IMAGES

    @classmethod
    def make(
        cls, dataset: str, params: GridParams, budget: int, images: int, repeat: int
    ) -> AttackBudgetCell:
        return cls(dataset, STRATEGY, "random", params.seed_size, params.batch_size, budget, repeat, images)

    @property
    def share_key(self) -> str:
        names = "+".join(s.name for s in SETTINGS)
        return f"attack-budget|{super().share_key}|n{self.budget}|t{self.images}|{names}"

    @property
    def cell_id(self) -> str:
        return self.share_key

    def identity(self) -> dict[str, Any]:
        return {"kind": "attack-budget", "cell_id": self.cell_id, "share_key": self.share_key, **asdict(self)}

    def snapshot_budgets(self, params: GridParams) -> tuple[int, ...]:
        return ()

    def work(self, pool_size: int, params: GridParams) -> float:
        """The steal's cost plus, per setting and image, the transfer PGD and (a guess) a quarter of the
        budget in guided restarts of 10 substitute steps and one prediction each."""
        per_image = sum(
            40 * ATTACK_STEP_COST + s.max_queries / 4 * (10 * ATTACK_STEP_COST + PREDICT_COST)
            for s in SETTINGS
        )
        return super().work(pool_size, params) + self.images * per_image

    def attack_seed(self, base_seed: int, setting: Setting) -> int:
        return derive_seed(base_seed, "attack-budget", self.dataset, setting.name, self.repeat)

    def run(self, inputs: Inputs, params: GridParams, work_dir: Path | None) -> list[dict[str, Any]]:
        """Steal, then one row per setting. With `work_dir`, an interrupted cell resumes: the steal from
        its checkpoint (a finished one is loaded, not trained again), and every finished setting's row
        is read back from `setting-<i>.json`."""
        substitute, steal = self.stolen(inputs, params, work_dir)
        correct = np.flatnonzero(inputs.target_labels == inputs.test_y)[: self.images]
        x, y = inputs.test_x[correct], inputs.test_y[correct]
        rows = []
        for i, setting in enumerate(SETTINGS):
            saved = None if work_dir is None else work_dir / f"setting-{i}.json"
            if saved is not None and saved.is_file():
                rows.append(json.loads(saved.read_text()))
                continue
            rows.append({**self.attack(setting, substitute, inputs, x, y, params.base_seed), **steal})
            if saved is not None:
                write_text_atomic(saved, json.dumps(rows[-1]))
        return rows

    def stolen(
        self, inputs: Inputs, params: GridParams, work_dir: Path | None
    ) -> tuple[nn.Module, dict[str, Any]]:
        """The substitute (stolen, or loaded from a finished steal in `work_dir/steal`) and its row fields."""
        folder = None if work_dir is None else work_dir / "steal"
        if folder is not None and (folder / SUMMARY).is_file():
            model = models.load(folder / SUBSTITUTE)[0]
            summary = json.loads((folder / SUMMARY).read_text())
        else:
            result = self.run_steal(inputs, params, folder)
            model, summary = result.substitute, result.summary()
        fields = {
            "steal_queries": int(summary["queries_used"]),
            "steal_accuracy": summary["accuracy"],
            "steal_agreement": summary["agreement"],
            "seed": self.seed(params.base_seed),
        }
        return model.eval(), fields

    def attack(
        self, setting: Setting, substitute: nn.Module, inputs: Inputs, x: np.ndarray, y: np.ndarray, base: int
    ) -> dict[str, Any]:
        """One setting's hybrid attack through a fresh oracle in its output mode; what it cost and got."""
        oracle = inputs.oracle(setting.mode)
        seed = self.attack_seed(base, setting)
        result = setting.attack().run(substitute, oracle, x, y, seed=seed)
        row = {
            **asdict(setting),
            "n_images": result.n,
            "continuation_used": result.attack["continuation_used"],
            "success_rate": result.success_rate,
            "transfer_success_rate": result.extra["transfer_success_rate"],
            "mean_queries": float(result.queries.mean()) if result.n else 0.0,
            "total_queries": result.total_queries,
            "oracle_queries": oracle.used,
            "curve": result.curve(CURVE),
            "per_image_queries": [int(q) for q in result.queries],
            "per_image_success": [bool(s) for s in result.success],
            "attack_seed": seed,
            "seconds_attack": result.seconds,
        }
        oracle.close()
        return row


def attack_budget_cells(scope: Scope) -> list[AttackBudgetCell]:
    budget = min(STEAL_BUDGET, scope.pool_size)
    images = min(IMAGES, scope.params.test_size or IMAGES)
    return [
        AttackBudgetCell.make(scope.dataset, scope.params, budget, images, r)
        for r in range(scope.params.repeats)
    ]


def attack_budget_points(results: Results, scope: Scope) -> list[dict[str, Any]]:
    """One point per (setting, Q, repeat): success, mean queries per image, and the total queries
    (stealing included) for 1,000 adversarial examples at that per-image budget."""
    points = []
    for cell in attack_budget_cells(scope):
        for row in results.rows_for(cell) or []:
            for at in row["curve"]:
                success, mean = float(at["success_rate"]), float(at["mean_queries"])
                points.append(
                    {
                        "setting": row["name"],
                        "queries_per_image": int(at["queries_per_image"]),
                        "repeat": cell.repeat,
                        "success_pct": 100.0 * success,
                        "mean_queries": mean,
                        "steal_queries": int(row["steal_queries"]),
                        "total_for_1000": int(row["steal_queries"]) + 1000 * mean / success
                        if success
                        else None,
                    }
                )
    return points


def attack_budget_notes(summary: Sequence[dict[str, Any]], params: GridParams) -> str:
    return (
        f"Hybrid attack (transfer, then substitute-guided queries) on the first {IMAGES:,} test images the "
        f"target classifies correctly, with a substitute stolen by {STRATEGY} in ≤ {STEAL_BUDGET:,} queries. "
        "success: images fooled within Q target queries; mean queries: per image, capped at Q; "
        "total for 1,000: stealing queries plus 1,000 adversarial examples at that rate."
    )


register_experiment(
    Experiment(
        name="attack-budget",
        title="Attack budget: hybrid attack success vs target queries per image",
        tasks=attack_budget_cells,
        points=attack_budget_points,
        keys=("setting", "queries_per_image"),
        figures=(
            FigureSpec(
                "fig14_attack_budget.png",
                "Hybrid attack: success vs target queries per image",
                "lines",
                x="queries_per_image",
                series="setting",
                y="success_pct",
                xlabel="target queries per image (budget Q)",
                ylabel="success (%)",
                ylim=(0.0, 100.0),
            ),
        ),
        in_table=lambda row, params: int(row["queries_per_image"]) in SHOWN,
        notes=attack_budget_notes,
        in_all=False,
    )
)
