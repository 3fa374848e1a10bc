"""Snapshots of a steal trajectory: the substitute's weights at chosen budgets, kept as the loop runs.

The transfer experiment attacks the substitutes of the strategies experiment's trajectories at several
budgets. Those trajectories already run in the grid, so a steal cell that is one of them keeps its
snapshots in a folder shared by the whole results folder (`shared_snapshots`), and the transfer cell
finds them there instead of stealing the same trajectory again. Snapshots are weights (ignored by git);
they stay until the results folder's `work/` is removed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from activethief import models
from activethief.files import write_text_atomic
from activethief.steal import RoundEvent

if TYPE_CHECKING:
    from activethief.experiments.cells import StealCell


def safe_name(text: str) -> str:
    """A cell id or share key as one folder name."""
    return re.sub(r"[^A-Za-z0-9+._=-]+", "_", text)


def shared_snapshots(work_dir: Path, cell: StealCell) -> Path:
    """Where the snapshots of `cell`'s trajectory live: beside every cell's work folder of one settings
    id (`<out>/work/<settings_id>/snapshots/<share key>`), so steal and transfer cells find the same."""
    return work_dir.parent / "snapshots" / safe_name(cell.share_key)


@dataclass
class Snapshot:
    """The substitute as it was after training on `record["train_size"]` answers, and that round's record."""

    model: nn.Module
    record: dict[str, Any]


class SnapshotKeeper:
    """Keeps the substitute of every round that trained on one of `budgets` answers, as `q<budget>.pt`.

    Pass `capture` as `steal`'s `on_round`: the round event carries the round's substitute, which is
    written (atomically, with its record) before the loop checkpoints the round, so an interrupted and
    resumed cell keeps what it has and never misses a budget.

    Args:
        folder: where the snapshots go.
        budgets: the train sizes to keep.
        arch: the substitute's architecture name (stored in the model file).
        num_classes: the substitute's number of classes.
    """

    def __init__(self, folder: Path, budgets: Sequence[int], arch: str, num_classes: int) -> None:
        self.folder, self.budgets = folder, tuple(budgets)
        self.arch, self.num_classes = arch, num_classes

    def path(self, budget: int) -> Path:
        return self.folder / f"q{budget}.pt"

    def missing(self) -> list[int]:
        return [b for b in self.budgets if not self.path(b).is_file()]

    def capture(self, event: RoundEvent) -> None:
        record = asdict(event.record)
        size = int(record["train_size"])
        if size not in self.budgets or self.path(size).is_file():
            return
        write_text_atomic(self.path(size).with_suffix(".json"), json.dumps(record))
        # last: a weights file implies its record
        models.save(
            event.substitute,
            self.path(size),
            arch=self.arch,
            num_classes=self.num_classes,
            round=record["round"],
        )

    def load(self) -> dict[int, Snapshot]:
        snapshots = {}
        for budget in self.budgets:
            model, metadata = models.load(self.path(budget))
            record = json.loads(self.path(budget).with_suffix(".json").read_text())
            if metadata.get("round") != record["round"] or int(record["train_size"]) != budget:
                raise RuntimeError(
                    f"snapshot {self.path(budget)} holds round {metadata.get('round')} but its record says "
                    f"round {record['round']} with {record['train_size']} answers; remove the folder"
                )
            snapshots[budget] = Snapshot(model, record)
        return snapshots
