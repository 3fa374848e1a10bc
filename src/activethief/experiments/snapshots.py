"""Snapshots of a steal trajectory: the substitute's weights at chosen budgets, kept as the loop runs.

The transfer experiment attacks the substitutes of the strategies experiment's trajectories at several
budgets. Those trajectories already run in the grid, so a steal cell that is one of them keeps its
snapshots in a folder shared by the whole results folder (`shared_snapshots`), and the transfer cell
finds them there instead of stealing the same trajectory again. Snapshots are weights (ignored by git);
they stay until the results folder's `work/` is removed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from activethief import models
from activethief.thief import CHECKPOINT

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
    """Copies the steal checkpoint's weights into `folder/q<train_size>.pt` when they are a budget's.

    Call `capture` from `steal`'s `on_round` and once more after `steal` returns: whichever round the
    checkpoint names at that moment (the previous one during a round, the last one after the run), its
    weights are kept if that round trained on a budget. Files are written atomically and kept across
    interruptions, so a resumed cell keeps what it has.
    """

    def __init__(self, steal_dir: Path, folder: Path, budgets: Sequence[int]) -> None:
        self.steal_dir, self.folder, self.budgets = steal_dir, folder, tuple(budgets)

    def path(self, budget: int) -> Path:
        return self.folder / f"q{budget}.pt"

    def missing(self) -> list[int]:
        return [b for b in self.budgets if not self.path(b).is_file()]

    def capture(self, *_: object) -> None:
        state_path = self.steal_dir / CHECKPOINT
        if not state_path.is_file():
            return
        state = json.loads(state_path.read_text())
        history, weights = state.get("history") or [], state.get("weights")
        if not history or not weights:
            return
        record = history[-1]
        size = int(record["train_size"])
        if size not in self.budgets or self.path(size).is_file():
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        record_path = self.path(size).with_suffix(".json")
        tmp = record_path.with_name(f".{record_path.name}.tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, record_path)
        tmp = self.path(size).with_name(f".{self.path(size).name}.tmp")
        shutil.copyfile(self.steal_dir / weights, tmp)
        os.replace(tmp, self.path(size))  # last: a weights file implies its record

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
