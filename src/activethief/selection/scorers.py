"""Uncertainty scorers: probability rows -> one score per row, higher = more informative to query.

Each scorer is the few lines of its formula; chunking, NaN checks, ranking and tie-breaking live once
in `Scorer`. Scores are computed in float64 so that rankings do not depend on float32 rounding.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import numpy.typing as npt

from activethief.errors import ConfigError
from activethief.selection.base import FloatArray, IndexArray, check_probs

ScoreArray = npt.NDArray[np.float64]

_CHUNK_ROWS = 1 << 16  # rows scored at once: bounds float64 temporaries to a few MiB at any pool size


class Scorer(ABC):
    """Turns probability rows into informativeness scores; subclasses implement `_score`.

    Attributes:
        name: The scorer's public name (also the name of its top-k strategy).
    """

    name: str

    def score(self, probs: FloatArray, rows: IndexArray | None = None) -> ScoreArray:
        """Scores of `probs[rows]` (all rows when `rows` is None), float64 [len(rows)].

        Raises:
            ConfigError: If `probs` is not [N, C] or a score is NaN (NaN in the probabilities).
        """
        probs = check_probs(probs)
        count = probs.shape[0] if rows is None else rows.shape[0]
        scores = np.empty(count, dtype=np.float64)
        for start in range(0, count, _CHUNK_ROWS):
            stop = min(start + _CHUNK_ROWS, count)
            block = probs[start:stop] if rows is None else probs[rows[start:stop]]
            scores[start:stop] = self._score(block.astype(np.float64))
        if bool(np.isnan(scores).any()):
            raise ConfigError(f"{self.name} scores contain NaN: probs has NaN values; fix the predictions")
        return scores

    def rank(self, probs: FloatArray, rows: IndexArray | None = None) -> IndexArray:
        """Positions into `rows` (or into `probs`), most informative first; ties keep the lower position."""
        order = np.argsort(-self.score(probs, rows), kind="stable")
        return order.astype(np.int64, copy=False)

    @abstractmethod
    def _score(self, probs: ScoreArray) -> ScoreArray:
        """The formula: float64 rows [n, C] -> scores [n], higher = more informative."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Entropy(Scorer):
    """Shannon entropy `-sum_c p_c ln p_c` (nats); 0 * ln 0 counts as 0, so one-hot rows score 0."""

    name = "entropy"

    def _score(self, probs: ScoreArray) -> ScoreArray:
        # ln(1) = 0 stands in where p <= 0, so no log(0) warning and no 0 * -inf = NaN.
        logs = np.log(np.where(probs > 0.0, probs, 1.0))
        scores: ScoreArray = -np.einsum("ij,ij->i", probs, logs)
        return scores


class Margin(Scorer):
    """Negative gap between the two largest probabilities, `-(p1 - p2)`: the smallest margin ranks first."""

    name = "margin"

    def _score(self, probs: ScoreArray) -> ScoreArray:
        num_classes = probs.shape[1]
        if num_classes == 1:  # a single class has no runner-up: p2 = 0
            return -probs[:, 0]
        top_two = np.partition(probs, num_classes - 2, axis=1)[:, num_classes - 2 :]
        return top_two[:, 0] - top_two[:, 1]


class LeastConfidence(Scorer):
    """One minus the largest probability, `1 - max_c p_c`: the least confident prediction ranks first."""

    name = "least-confidence"

    def _score(self, probs: ScoreArray) -> ScoreArray:
        scores: ScoreArray = 1.0 - probs.max(axis=1)
        return scores


def entropy(probs: FloatArray) -> ScoreArray:
    """Entropy (nats) of each row of `probs` [n, C], float64 [n]."""
    return Entropy().score(probs)


def mean_entropy(probs_rows: FloatArray) -> float:
    """Mean entropy (nats) of the rows of `probs_rows` [n, C]; the entropy stopping rule compares these.

    Raises:
        ConfigError: If there are no rows, the shape is not [n, C] or values are NaN.
    """
    if isinstance(probs_rows, np.ndarray) and probs_rows.ndim == 2 and probs_rows.shape[0] == 0:
        raise ConfigError("mean_entropy needs at least one probability row, got none")
    return float(entropy(probs_rows).mean())
