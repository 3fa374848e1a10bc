"""What a steal run produces: one record per round, the round event handed to `on_round`, the result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import nn

if TYPE_CHECKING:
    from activethief.steal.config import StealConfig


@dataclass
class RoundRecord:
    """One round: the substitute trained on `train_size` answers, and the batch it then selected."""

    round: int
    train_size: int
    queries_used: int
    selected: int
    batch_entropy: float | None
    accuracy: float | None
    agreement: float | None
    train_epochs: int
    seconds_train: float
    seconds_select: float
    seconds_query: float
    # Answers bought on the test set to measure agreement (`buy_test_labels`), apart from queries_used.
    evaluation_queries: int = 0
    # Optimiser steps of this round's training (what bounds its cost; 0 for the untrained round 0).
    train_steps: int = 0


@dataclass(frozen=True)
class RoundEvent:
    """What `on_round` receives after each round: its record and the substitute that round trained.

    The substitute is the loop's own model: read it (predict, copy its weights), do not train it.
    """

    record: RoundRecord
    substitute: nn.Module


@dataclass
class StealResult:
    """What `steal` returns: the substitute (a torch module) and how it got there."""

    substitute: nn.Module
    history: list[RoundRecord]
    queries_used: int
    stopped_by: str
    stopped_at_round: int
    config: StealConfig
    evaluation_queries: int = 0

    def summary(self) -> dict[str, Any]:
        last = self.history[-1] if self.history else None
        return {
            "queries_used": self.queries_used,
            "evaluation_queries": self.evaluation_queries,
            "stopped_by": self.stopped_by,
            "stopped_at_round": self.stopped_at_round,
            "accuracy": last.accuracy if last else None,
            "agreement": last.agreement if last else None,
            "rounds": len(self.history),
            "seconds": round(
                sum(r.seconds_train + r.seconds_select + r.seconds_query for r in self.history), 2
            ),
            "config": self.config.to_dict(),
        }
