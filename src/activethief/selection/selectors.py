"""Simple selectors: top-k by a scorer, uniform random, and class-balanced ("uniform") random.

k-center greedy lives in `kcenter.py`, compositions in `compose.py`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from activethief.errors import ConfigError
from activethief.selection.base import IndexArray, Need, PoolView, Strategy
from activethief.selection.scorers import Scorer

CountArray = npt.NDArray[np.int64]


class TopScore(Strategy):
    """The `k` candidates a scorer finds most informative; ties go to the lower pool index.

    Args:
        scorer: Any `Scorer`; the strategy takes its name (`entropy`, `margin`, `least-confidence`).
    """

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        self.name = scorer.name

    def choose(
        self,
        view: PoolView,
        labelled: IndexArray,
        candidates: IndexArray,
        k: int,
        rng: np.random.Generator,
    ) -> IndexArray:
        return candidates[self.scorer.rank(view.need_probs(), candidates)[:k]]


class RandomChoice(Strategy):
    """`k` candidates drawn uniformly at random without replacement (the passive-learning baseline)."""

    name = "random"
    needs: frozenset[Need] = frozenset()

    def choose(
        self,
        view: PoolView,
        labelled: IndexArray,
        candidates: IndexArray,
        k: int,
        rng: np.random.Generator,
    ) -> IndexArray:
        return rng.choice(candidates, size=k, replace=False).astype(np.int64, copy=False)


def equal_shares(counts: CountArray, k: int, rng: np.random.Generator) -> CountArray:
    """Split `k` picks over groups of sizes `counts` as evenly as the sizes allow.

    Rounds: with `r` picks still to place and `a` groups that still have unpicked members, each of those
    groups gets `r // a` more picks, capped at what it has left. Groups that run out drop out and the
    picks they could not take are re-split in the next round. Once `r < a`, `r` of the `a` groups,
    drawn at random from `rng` (so no group is favoured round after round), get one more pick each.
    The result is the water-filling split: no group gets more than any group that could have taken more,
    and shares differ by at most one among groups that were not exhausted.

    Args:
        counts: Members per group (non-negative ints); `counts.sum() >= k`.
        k: Picks to place, >= 0.
        rng: Breaks the final remainder.

    Returns:
        Picks per group, int64 like `counts`, summing to `k`, each `<= counts`.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if k < 0 or k > int(counts.sum()):
        raise ConfigError(f"cannot split {k} picks over groups holding {int(counts.sum())} points in total")
    shares = np.zeros_like(counts)
    remaining = k
    while remaining > 0:
        open_groups = np.flatnonzero(shares < counts)
        per_group = remaining // open_groups.size
        if per_group == 0:
            lucky = rng.choice(open_groups, size=remaining, replace=False)
            shares[lucky] += 1
            break
        added = np.minimum(per_group, counts[open_groups] - shares[open_groups])
        shares[open_groups] += added
        remaining -= int(added.sum())
    return shares


class ClassBalanced(Strategy):
    """The "uniform" strategy: an equal share of the `k` picks per predicted class, random within each class.

    A candidate's class is the argmax of its probabilities. Shares follow `equal_shares`: each class gets
    `k // C`; classes with fewer candidates than their share give all they have, and the shortfall is
    re-split equally over the classes that still have candidates (any last remainder goes to randomly
    drawn classes). Within a class the picks are drawn uniformly at random without replacement.
    """

    name = "uniform"

    def choose(
        self,
        view: PoolView,
        labelled: IndexArray,
        candidates: IndexArray,
        k: int,
        rng: np.random.Generator,
    ) -> IndexArray:
        probs = view.need_probs()
        predicted = np.argmax(probs[candidates], axis=1)
        counts = np.bincount(predicted, minlength=probs.shape[1]).astype(np.int64)
        shares = equal_shares(counts, k, rng)
        by_class = candidates[np.argsort(predicted, kind="stable")]  # grouped by class, ascending index
        starts = np.concatenate(([0], np.cumsum(counts)))
        picks = [
            rng.choice(by_class[starts[c] : starts[c + 1]], size=int(shares[c]), replace=False)
            for c in np.flatnonzero(shares)
        ]
        return np.concatenate(picks).astype(np.int64, copy=False)
