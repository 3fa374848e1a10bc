"""Stopping rules: when the ActiveThief loop stops buying queries.

`budget` stops when the budget is spent or the pool is exhausted (always in force). `entropy:ALPHA` is the
earlier study's rule: stop after round i when |H(i-1) - H(i)| <= ALPHA, where H(i) is the mean entropy, in
nats (natural logarithm), of the batch selected in round i. `entropy:ALPHA:PATIENCE` asks for PATIENCE such
changes in a row: a single small change is often noise (measured on FashionMNIST: the one-change rule
stops at 3k-28k queries, well before accuracy levels off; three in a row stop at 31k-41k at alpha 0.01).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Protocol

from activethief.errors import ConfigError


class StoppingRule(Protocol):
    """Decides after each round, from the batch entropies so far, whether to stop."""

    @property
    def name(self) -> str: ...

    def should_stop(self, batch_entropies: list[float]) -> bool: ...


@dataclass(frozen=True)
class BudgetOnly:
    """Never stops early: the loop ends when the budget or the pool runs out."""

    @property
    def name(self) -> str:
        return "budget"

    def should_stop(self, batch_entropies: list[float]) -> bool:
        return False


@dataclass(frozen=True)
class EntropyChange:
    """Stop when the mean entropy of the selected batch changed by at most `alpha` between consecutive
    rounds, `patience` times in a row (1: the study's rule, one change is enough)."""

    alpha: float
    patience: int = 1

    def __post_init__(self) -> None:
        if not self.alpha >= 0 or self.patience < 1:  # `not >=` also rejects NaN
            raise ConfigError(
                f"entropy stopping needs alpha >= 0 and patience >= 1, got {self.alpha}, {self.patience}"
            )

    @property
    def name(self) -> str:
        return f"entropy:{self.alpha:g}" + (f":{self.patience}" if self.patience > 1 else "")

    def should_stop(self, batch_entropies: list[float]) -> bool:
        recent = batch_entropies[-(self.patience + 1) :]
        return len(recent) == self.patience + 1 and all(
            abs(earlier - later) <= self.alpha for earlier, later in pairwise(recent)
        )


def parse_stop(text: str) -> StoppingRule:
    """`budget`, `entropy:ALPHA` or `entropy:ALPHA:PATIENCE` (ALPHA >= 0 in nats, PATIENCE >= 1)."""
    text = text.strip()
    if text == "budget":
        return BudgetOnly()
    parts = text.split(":")
    if parts[0] == "entropy" and len(parts) in (2, 3):
        try:
            return EntropyChange(float(parts[1]), int(parts[2]) if len(parts) == 3 else 1)
        except (ValueError, ConfigError):
            pass
    raise ConfigError(
        f"invalid stopping rule {text!r}; use 'budget', 'entropy:ALPHA' or 'entropy:ALPHA:PATIENCE' "
        "with ALPHA >= 0 (nats) and PATIENCE a whole number >= 1"
    )
