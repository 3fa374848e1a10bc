"""Stopping rules: when the ActiveThief loop stops buying queries.

`budget` stops when the budget is spent or the pool is exhausted (always in force). `entropy:ALPHA` is the
earlier study's rule: stop after round i when |H(i-1) - H(i)| <= ALPHA, where H(i) is the mean entropy, in
nats (natural logarithm), of the batch selected in round i.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    """Stop when the mean entropy of the selected batch changed by at most `alpha` since the last round."""

    alpha: float

    @property
    def name(self) -> str:
        return f"entropy:{self.alpha:g}"

    def should_stop(self, batch_entropies: list[float]) -> bool:
        return len(batch_entropies) >= 2 and abs(batch_entropies[-2] - batch_entropies[-1]) <= self.alpha


def parse_stop(text: str) -> StoppingRule:
    """`budget` or `entropy:ALPHA` (ALPHA >= 0, in nats)."""
    text = text.strip()
    if text == "budget":
        return BudgetOnly()
    if text.startswith("entropy:"):
        try:
            alpha = float(text.split(":", 1)[1])
        except ValueError:
            alpha = -1.0
        if alpha >= 0:
            return EntropyChange(alpha)
    raise ConfigError(f"invalid stopping rule {text!r}; use 'budget' or 'entropy:ALPHA' with ALPHA >= 0")
