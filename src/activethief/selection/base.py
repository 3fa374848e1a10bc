"""The `Strategy` base class: validates a selection request once, so each strategy is only its idea.

A strategy declares the inputs it needs (`Need`: the substitute's probabilities over the pool, its
penultimate-layer features, the model itself), receives them in a `PoolView` with the pool indices that
are already labelled and those it may choose from, and returns `k` of the latter. The loop computes
only what the chosen strategy needs.
"""

from __future__ import annotations

import enum
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from activethief.errors import ConfigError

IndexArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.floating[Any]]


def check_probs(probs: object, what: str = "probs") -> FloatArray:
    """Return `probs` as a 2-D float array [N, C], or raise ConfigError saying what is wrong with it."""
    if not isinstance(probs, np.ndarray):
        raise ConfigError(f"{what} must be a numpy array [N, C], got {type(probs).__name__}")
    if probs.ndim != 2 or probs.shape[0] == 0 or probs.shape[1] == 0:
        raise ConfigError(
            f"{what} must have shape [N, C] with N >= 1 points and C >= 1 classes, got shape {probs.shape}"
        )
    if probs.dtype.kind != "f":
        raise ConfigError(f"{what} must hold floats (softmax probabilities), got dtype {probs.dtype}")
    # One float64 sum catches NaN/inf without a pool-sized temporary; only then look closer.
    if not math.isfinite(float(np.sum(probs, dtype=np.float64))):
        bad_rows = np.flatnonzero(~np.isfinite(probs).all(axis=1))
        if bad_rows.size:
            raise ConfigError(
                f"{what} contains NaN or infinite values in {bad_rows.size} rows (first: row {bad_rows[0]}); "
                "the substitute's predictions are broken (diverged training?); fix them before selecting"
            )
    return probs


class Need(enum.Enum):
    """An input a strategy or seeder reads; the loop computes only those the chosen one declares."""

    PROBS = "probs"  # the substitute's softmax probabilities over the pool, [N, C]
    FEATURES = "features"  # its penultimate-layer features over the pool, [N, D]
    MODEL = "model"  # the substitute itself (gradients, adversarial distances)
    IMAGES = "images"  # the pool's pixels (always at hand: nothing to compute)


@dataclass(frozen=True)
class PoolView:
    """What a selection sees of the pool: its size and the inputs computed for it (None if not needed).

    `images` is a float array [N, ...], or (from the loop, for a selection strategy) the `data.Pool`
    itself: read it by index, `images[indices]` (float32 [n, C, H, W], converted per call), never whole.
    """

    size: int
    probs: FloatArray | None = None
    features: FloatArray | None = None
    model: Any = None
    images: Any = None  # FloatArray [N, ...] or an image source read by index (a data.Pool)

    @classmethod
    def of(cls, probs_or_view: PoolView | FloatArray) -> PoolView:
        """A view as given, or one holding only `probs` (the common case of probability strategies)."""
        if isinstance(probs_or_view, PoolView):
            return probs_or_view
        probs = check_probs(probs_or_view)
        return cls(size=probs.shape[0], probs=probs)

    def need_probs(self) -> FloatArray:
        """`need(Need.PROBS)`, typed: the probabilities, or a ConfigError saying none were computed."""
        probs: FloatArray = self.need(Need.PROBS)
        return probs

    def need(self, need: Need) -> Any:
        """The input `need`, or a ConfigError saying it was not computed."""
        inputs = {Need.PROBS: self.probs, Need.FEATURES: self.features, Need.MODEL: self.model}
        value = self.images if need is Need.IMAGES else inputs[need]
        if value is None:
            raise ConfigError(f"this strategy needs the pool's {need.value}, but the view holds none")
        return value

    def check(self, needs: frozenset[Need]) -> PoolView:
        """Validate the inputs `needs` names (shapes, NaN) against the pool size; returns self."""
        if self.size < 1:
            raise ConfigError(f"the pool must hold at least one point, got {self.size}")
        for need in needs:
            value = self.need(need)
            if need is Need.PROBS:
                check_probs(value)
            if need in (Need.PROBS, Need.FEATURES, Need.IMAGES) and len(value) != self.size:
                raise ConfigError(f"the pool's {need.value} have {len(value)} rows for {self.size} points")
            if need is Need.FEATURES:
                check_probs(value, "features")
        return self


def check_indices(indices: object, n_pool: int, what: str) -> IndexArray:
    """Return `indices` as a 1-D int64 array of pool indices in [0, n_pool), or raise ConfigError."""
    array = np.asarray(indices)
    if array.ndim != 1:
        raise ConfigError(f"{what} must be a 1-D array of pool indices, got shape {array.shape}")
    if array.size and array.dtype.kind not in "iu":
        raise ConfigError(f"{what} must hold integer pool indices, got dtype {array.dtype}")
    array = array.astype(np.int64, copy=False)
    if array.size and (array.min() < 0 or array.max() >= n_pool):
        raise ConfigError(
            f"{what} holds indices outside the pool [0, {n_pool}): min {array.min()}, max {array.max()}; "
            "indices must refer to rows of probs"
        )
    return array


def check_k(k: object, available: int, what: str = "candidates") -> int:
    """Return `k` as an int in [1, available], or raise ConfigError."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise ConfigError(f"k must be an integer number of points to select, got {k!r}")
    if k <= 0:
        raise ConfigError(f"k must be a positive number of points to select, got {k}")
    if k > available:
        raise ConfigError(
            f"cannot select k={k} points from {available} {what}; lower k or provide more {what} "
            "(the unlabelled pool may be exhausted)"
        )
    return int(k)


def check_rng(rng: object) -> np.random.Generator:
    """Return `rng` if it is a numpy Generator; selection never falls back to global random state."""
    if not isinstance(rng, np.random.Generator):
        raise ConfigError(
            "rng must be a numpy.random.Generator (e.g. np.random.default_rng(seed)), "
            f"got {type(rng).__name__}"
        )
    return rng


def sorted_unique_candidates(candidates: IndexArray) -> IndexArray:
    """Sort candidates ascending (a no-op when they already are) and reject duplicates."""
    if candidates.size > 1 and not bool(np.all(candidates[1:] > candidates[:-1])):
        candidates = np.sort(candidates)
        duplicated = candidates[1:] == candidates[:-1]
        if bool(duplicated.any()):
            raise ConfigError(
                f"candidates contain duplicate pool indices (e.g. {candidates[1:][duplicated][0]}); "
                "pass each candidate once"
            )
    return candidates


class Strategy(ABC):
    """An active-learning selection strategy: pick `k` informative candidates from the pool.

    `select` validates the request and hands `choose` a clean one; subclasses implement `choose`.

    Attributes:
        name: The public name (`make_strategy(name)` builds it).
        needs: The inputs `choose` reads; the loop computes only these (nothing at all for `random`).
    """

    name: str
    needs: frozenset[Need] = frozenset({Need.PROBS})

    def select(
        self,
        view: PoolView | FloatArray,
        labelled: npt.ArrayLike,
        candidates: npt.ArrayLike,
        k: int,
        rng: np.random.Generator,
    ) -> IndexArray:
        """Pick `k` pool indices from `candidates`.

        Args:
            view: What the strategy needs of the pool (`needs`), or just the substitute's probabilities
                over the whole pool, float [N, C].
            labelled: Pool indices already labelled (int, [L], may be empty); never returned.
            candidates: Pool indices to choose from (int, [M]); disjoint from `labelled`.
            k: How many to pick, 1 <= k <= M.
            rng: The only source of randomness; the same seed gives the same result.

        Returns:
            int64 array of exactly `k` unique pool indices, all from `candidates`.

        Raises:
            ConfigError: On bad shapes, NaN in the inputs, a missing input, bad indices or an impossible `k`.
        """
        pool = PoolView.of(view).check(self.needs)
        n_pool = pool.size
        labelled_idx = check_indices(labelled, n_pool, "labelled")
        candidate_idx = sorted_unique_candidates(check_indices(candidates, n_pool, "candidates"))
        k = check_k(k, candidate_idx.size)
        rng = check_rng(rng)
        if labelled_idx.size:
            positions = np.searchsorted(candidate_idx, labelled_idx).clip(max=candidate_idx.size - 1)
            overlap = candidate_idx[positions] == labelled_idx
            if bool(overlap.any()):
                raise ConfigError(
                    f"{int(overlap.sum())} candidates are already labelled (e.g. pool index "
                    f"{labelled_idx[overlap][0]}); candidates must exclude labelled points"
                )
        chosen = self.choose(pool, labelled_idx, candidate_idx, k, rng)
        assert chosen.shape == (k,) and chosen.dtype == np.int64, (self.name, chosen.shape, chosen.dtype)
        return chosen

    @abstractmethod
    def choose(
        self,
        view: PoolView,
        labelled: IndexArray,
        candidates: IndexArray,
        k: int,
        rng: np.random.Generator,
    ) -> IndexArray:
        """Pick `k` of `candidates` from an already validated request.

        `candidates` is sorted ascending, unique and disjoint from `labelled`; 1 <= k <= len(candidates).
        Compositions call this directly on narrowed candidates, skipping repeated validation.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
