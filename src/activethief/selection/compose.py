"""Composition: narrow the candidates with one strategy, then diversify among them with the next.

`entropy+kcenter` is `Composed([Narrow(TopScore(Entropy()), factor=10)], KCenter())`: entropy keeps
the 10k most uncertain candidates, k-center picks k diverse points among those. Every stage still
sees all labelled points, so k-center's initial centres are the whole labelled set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from activethief.errors import ConfigError
from activethief.selection.base import IndexArray, PoolView, Strategy

# Entropy keeps 10k candidates: the diversifying stage still has ~10 choices per pick, while every pick
# stays among the most uncertain points. A first guess, to be tuned by measuring query efficiency.
DEFAULT_NARROW_FACTOR = 10.0


def check_narrowing(factor: float, count: int | None, stage: str) -> None:
    """Raise ConfigError unless `factor` is a finite number >= 1 and `count` is None or a positive int."""
    if isinstance(factor, bool) or not (
        isinstance(factor, int | float) and math.isfinite(factor) and factor >= 1
    ):
        raise ConfigError(
            f"narrowing factor for {stage} must be a finite number >= 1 (it keeps factor * k candidates), "
            f"got {factor!r}"
        )
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise ConfigError(
            f"narrowing count for {stage} must be a positive integer (candidates kept) or None, got {count!r}"
        )


@dataclass(frozen=True)
class Narrow:
    """One narrowing stage: `strategy` keeps `count` candidates, or `ceil(factor * k)` if `count` is None.

    The kept size is never below `k` (a stage cannot leave fewer candidates than the batch needs).
    """

    strategy: Strategy
    factor: float = DEFAULT_NARROW_FACTOR
    count: int | None = None

    def __post_init__(self) -> None:
        check_narrowing(self.factor, self.count, self.strategy.name)

    def size(self, k: int) -> int:
        """How many candidates this stage keeps for a batch of `k`."""
        wanted = self.count if self.count is not None else math.ceil(self.factor * k)
        return max(k, wanted)


class Composed(Strategy):
    """Run narrowing stages in order, then let `final` pick `k` among the survivors.

    A stage whose size is not below the current number of candidates is skipped (nothing to narrow).
    The name joins the stage names with "+", e.g. "entropy+kcenter+uniform".

    Args:
        stages: Narrowing stages, applied first to last.
        final: Picks the `k` points from what the stages kept.
    """

    def __init__(self, stages: Sequence[Narrow], final: Strategy) -> None:
        self.stages = tuple(stages)
        self.final = final
        self.name = "+".join([stage.strategy.name for stage in self.stages] + [final.name])
        self.needs = final.needs.union(*(stage.strategy.needs for stage in self.stages))

    def choose(
        self,
        view: PoolView,
        labelled: IndexArray,
        candidates: IndexArray,
        k: int,
        rng: np.random.Generator,
    ) -> IndexArray:
        for stage in self.stages:
            keep = stage.size(k)
            if keep < candidates.size:
                # Sorted again so the next stage sees the invariant `choose` promises.
                candidates = np.sort(stage.strategy.choose(view, labelled, candidates, keep, rng))
        return self.final.choose(view, labelled, candidates, k, rng)
