"""Query attacks' plumbing: every target query counted per image, within a per-image and a total budget.

A query attack sends candidate images to the target through an `Oracle` (unkeyed queries, as transfer
evaluation does: counted, in the ledger, budget-checked) and stops each image at its first success: the
target's answer shows the goal (untargeted: a class other than the true label; targeted: the goal
class). `run_search` is the loop every such attack shares: it asks a `Search` for one candidate per
still-running image, queries them in one batch, tells the search the answers, and drops the images that
succeeded or spent their budget. The result lists each image's queries and success (`QueryAttackResult`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from activethief.errors import ConfigError
from activethief.oracle.base import Oracle


@dataclass(frozen=True)
class QueryBudget:
    """How many target queries an attack may spend.

    Args:
        per_image: the most queries per image (>= 1); an image stops at its first success before that.
        total: the most queries over all images (None: no limit but `per_image`). Running images are
            asked in rounds, one query each, so an image fooled early leaves the rest to the others;
            when the total runs out mid-round, the first images in index order get the last queries.
    """

    per_image: int
    total: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.per_image, bool) or not isinstance(self.per_image, int) or self.per_image < 1:
            raise ConfigError(f"max queries per image must be an integer >= 1; got {self.per_image!r}")
        if self.total is not None and (isinstance(self.total, bool) or self.total < 0):
            raise ConfigError(f"total queries must be an integer >= 0 or None; got {self.total!r}")


def fooled(answers: np.ndarray, goal: np.ndarray, *, targeted: bool) -> np.ndarray:
    """bool [n]: the target's answers [n, C] reach the goal (targeted: class `goal`; else not `goal`)."""
    predicted = np.asarray(answers).argmax(1)
    hit: np.ndarray = predicted == goal if targeted else predicted != goal
    return hit


def margin(answers: np.ndarray, goal: np.ndarray, *, targeted: bool) -> np.ndarray:
    """float64 [n]: the margin loss of the target's answers, below 0 exactly when `fooled`.

    Untargeted: log p_goal - max over other classes of log p; targeted: max over other classes of log p
    minus log p_goal (the loss of Carlini and Wagner, 2017, on log-probabilities; Square Attack's choice).
    """
    logp = np.log(np.clip(np.asarray(answers, dtype=np.float64), 1e-30, None))
    rows = np.arange(len(logp))
    at_goal = logp[rows, goal]
    others = logp.copy()
    others[rows, goal] = -np.inf
    best_other = others.max(1)
    out: np.ndarray = best_other - at_goal if targeted else at_goal - best_other
    return out


class TargetQueries:
    """The target, asked through an oracle, with each image's queries counted against the budgets.

    Args:
        oracle: the target's black box; answers are unkeyed queries (never mixed with a pool's).
        n: the images being attacked.
        budget: per-image and total limits.
        batch_size: images per oracle request.
    """

    def __init__(self, oracle: Oracle, n: int, budget: QueryBudget, *, batch_size: int = 256) -> None:
        if batch_size < 1:
            raise ConfigError(f"query batch size must be >= 1; got {batch_size}")
        self.oracle = oracle
        self.budget = budget
        self.batch_size = batch_size
        self.queries = np.zeros(n, dtype=np.int64)

    @property
    def spent(self) -> int:
        return int(self.queries.sum())

    def room(self) -> int:
        """Queries still allowed by the total budget and by the oracle's own budget."""
        limits = [self.budget.total - self.spent] if self.budget.total is not None else []
        if self.oracle.remaining is not None:
            limits.append(self.oracle.remaining)
        return max(0, min(limits)) if limits else math.inf  # type: ignore[return-value]

    def allowed(self, indices: np.ndarray) -> np.ndarray:
        """The images among `indices` (ascending) that may be asked once more now."""
        open_: np.ndarray = indices[self.queries[indices] < self.budget.per_image]
        room = self.room()
        return open_ if room >= len(open_) else open_[: int(room)]

    def ask(self, indices: np.ndarray, images: np.ndarray) -> np.ndarray:
        """The target's answers [k, C] on `images` [k, ...], one query charged to each image in `indices`."""
        assert len(indices) == len(images), (len(indices), len(images))
        if np.any(self.queries[indices] >= self.budget.per_image):
            raise ConfigError("an image was asked beyond its per-image query budget")
        chunks = [np.zeros((0, self.oracle.num_classes), np.float32)]
        for start in range(0, len(images), self.batch_size):
            chunks.append(np.asarray(self.oracle.query(images[start : start + self.batch_size])))
        self.queries[indices] += 1
        return np.concatenate(chunks)


class Search(Protocol):
    """One query attack's per-image state: candidates to send, and what it learns from the answers."""

    def propose(self, indices: np.ndarray) -> np.ndarray:
        """The next candidate image for each image in `indices`: float32 [k, C, H, W] in the threat ball."""
        ...

    def observe(self, indices: np.ndarray, candidates: np.ndarray, answers: np.ndarray) -> None:
        """The target's answers [k, C] on the candidates just sent for `indices`."""
        ...


@dataclass(frozen=True)
class QueryAttackResult:
    """Per-image outcome of a query attack; JSON-able via `to_dict` (the arrays as per-image lists).

    `queries[i]` counts every target query image i used, the successful one included; an image that
    failed used its whole budget (or what the total budget left it). `adversarial[i]` is the first
    candidate that fooled the target, or the last one sent when none did.
    """

    attack: dict[str, Any]
    goal: np.ndarray  # int64 [n]: the true class (untargeted) or the class each image is pushed to
    targeted: bool
    success: np.ndarray  # bool [n]
    queries: np.ndarray  # int64 [n]
    max_queries_per_image: int
    seconds: float
    adversarial: np.ndarray | None = field(default=None, repr=False, compare=False)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.queries)

    @property
    def success_rate(self) -> float:
        return float(self.success.mean()) if self.n else 0.0

    @property
    def total_queries(self) -> int:
        return int(self.queries.sum())

    def curve(self, budgets: Sequence[int]) -> list[dict[str, float]]:
        """Success rate and mean queries per image had the per-image budget been each Q in `budgets`.

        Exact for attacks whose images are independent (stopping at the first success means a smaller
        budget only cuts the images that needed more): success at Q counts images fooled within Q
        queries, and each image spends min(its queries, Q).
        """
        rows = []
        for q in budgets:
            if q > self.max_queries_per_image:
                continue
            hit = self.success & (self.queries <= q)
            rows.append(
                {
                    "queries_per_image": int(q),
                    "success_rate": float(hit.mean()) if self.n else 0.0,
                    "mean_queries": float(np.minimum(self.queries, q).mean()) if self.n else 0.0,
                }
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        fooled_queries = self.queries[self.success]
        return {
            "attack": self.attack,
            "n": self.n,
            "targeted": self.targeted,
            "max_queries_per_image": self.max_queries_per_image,
            "success_rate": self.success_rate,
            "mean_queries": float(self.queries.mean()) if self.n else 0.0,
            "median_queries_successful": float(np.median(fooled_queries)) if len(fooled_queries) else None,
            "total_queries": self.total_queries,
            "seconds": self.seconds,
            **self.extra,
            "per_image": [
                {"queries": int(q), "success": bool(s), "goal": int(g)}
                for q, s, g in zip(self.queries, self.success, self.goal, strict=True)
            ],
        }


def run_search(
    search: Search,
    target: TargetQueries,
    goal: np.ndarray,
    *,
    targeted: bool,
    initial: np.ndarray,
    send_initial: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Query `search`'s candidates until every image succeeded or ran out of budget.

    Args:
        search: proposes candidates and learns from the answers.
        target: the counted target.
        goal: int64 [n], the goal class per image.
        targeted: whether `goal` is to be reached (True) or left (False).
        initial: float32 [n, C, H, W], each image's starting point (the transfer example, or the clean
            image); an image never asked keeps it.
        send_initial: make `initial` the first query of every image (the transfer step) rather than
            asking `search` for it.

    Returns:
        (success bool [n], adversarial [n, ...]: the first fooling candidate, else the last one sent).
    """
    n = len(goal)
    success = np.zeros(n, dtype=bool)
    best = np.array(initial, dtype=np.float32, copy=True)
    active = np.arange(n)
    first = send_initial
    while len(active):
        ask = target.allowed(active)
        if not len(ask):
            break
        candidates = best[ask] if first else search.propose(ask)
        first = False
        assert candidates.shape == (len(ask), *best.shape[1:]), candidates.shape
        answers = target.ask(ask, candidates)
        hit = fooled(answers, goal[ask], targeted=targeted)
        best[ask] = candidates
        success[ask[hit]] = True
        search.observe(ask, candidates, answers)
        active = ask[~hit]
    return success, best


class Timer:
    """Seconds since creation, rounded for results."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return round(time.perf_counter() - self.start, 3)
