"""PRADA (Juuti, Szyller, Marchal & Asokan, IEEE EuroS&P 2019): would the target's owner notice a steal?

PRADA watches one client's stream of queries. Each query x, with the class c the target predicts for it,
is compared with the client's *growing set* G_c for that class: its minimum L2 distance d to G_c goes
into the client's distance set D, and x joins G_c when d exceeds the class threshold
T_c = max(0, mean(D_Gc) - std(D_Gc)) over the distances D_Gc recorded when G_c's members joined (the
first query of a class only starts G_c: it has no distance). Natural queries give roughly normally
distributed distances; synthetic ones (small perturbations of a few seeds, as in JbDA) give many tiny
distances next to a few large ones. Once |D| >= `min_queries`, the Shapiro-Wilk statistic W of D (after
dropping values more than 3 standard deviations from D's mean, as the paper does) is computed after every
query, and the client is flagged the first time W < delta.

Cost: every query is compared with its class's growing set only (one float32 matrix-vector product, then
an exact recheck of the few nearest), and W of n distances costs about 0.2 ms at n = 10,000, so W is
computed after *every* query, as in the paper: `flagged_at` is exact, never rounded to a check interval.
Memory is the growing sets, stored flattened as float32: 3.1 KB per stored 1x28x28 query (at most 31 MB
for 10,000 queries) but 602 KB per stored 3x224x224 query (6 GB for 10,000), so for large RGB inputs
give PRADA downsampled images or bound the clients' budgets.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from scipy import stats

from activethief.errors import ConfigError, OracleError
from activethief.oracle.base import DEFAULT_INPUT_SHAPE, Backend, Shape
from activethief.oracle.modes import OutputMode

# The paper's defaults: it tests D once it holds more than 100 distances and, for MNIST, alarms when
# W < 0.95 (it reports detecting every prior attack there with no false positive on benign streams).
DEFAULT_DELTA = 0.95
DEFAULT_MIN_QUERIES = 100
TRIM_SIGMA = 3.0  # distances further than this many std from D's mean are outliers, left out of W
_EPS32 = float(np.finfo(np.float32).eps)
EVALUATION_REQUEST_ID = "evaluation"  # the id `Oracle.evaluate` uses for free answers of an owned model


def _check_delta(delta: object) -> float:
    if isinstance(delta, bool) or not isinstance(delta, int | float) or not 0.0 < float(delta) <= 1.0:
        raise ConfigError(f"PRADA delta must be a number in (0, 1] (the paper uses 0.95), got {delta!r}")
    return float(delta)


class _GrowingSet:
    """G_c for one class: its members (flattened float32, capacity doubling) and D_Gc's running moments."""

    def __init__(self, first: np.ndarray) -> None:
        self._rows = np.empty((8, first.size), np.float32)
        self._norms = np.empty(8, np.float64)  # squared norms of the members, for the fast distances
        self._size = 0
        self._count = 0  # len(D_Gc): members that joined with a distance (all but the first)
        self._mean = 0.0
        self._m2 = 0.0  # Welford's sum of squared deviations of D_Gc
        self._append(first)

    def _append(self, x: np.ndarray) -> None:
        if self._size == len(self._rows):
            self._rows = np.concatenate([self._rows, np.empty_like(self._rows)])
            self._norms = np.concatenate([self._norms, np.empty_like(self._norms)])
        self._rows[self._size] = x
        self._norms[self._size] = float(np.dot(x.astype(np.float64), x))
        self._size += 1

    @property
    def size(self) -> int:
        return self._size

    @property
    def threshold(self) -> float:
        """T_c = max(0, mean(D_Gc) - std(D_Gc)); 0 while G_c holds only its first member."""
        if self._count == 0:
            return 0.0
        return max(0.0, self._mean - float(np.sqrt(self._m2 / self._count)))

    def min_distance(self, x: np.ndarray, x_norm: float) -> float:
        """Exact minimum L2 distance from `x` to the members.

        Squared distances are first estimated as |g|^2 - 2 g.x + |x|^2 (one float32 matrix-vector
        product); every member within a generous rounding margin of the estimated minimum is then
        measured directly, so near-duplicates (a JbDA stream) are not lost to cancellation.
        """
        rows, norms = self._rows[: self._size], self._norms[: self._size]
        estimate = norms - 2.0 * (rows @ x).astype(np.float64) + x_norm
        # Float32 rounding of a dot product of n terms is at most about n * eps of |g|^2 + |x|^2.
        margin = min(1e-3, 2.0 * x.size * _EPS32) * (x_norm + float(norms.max())) + 1e-12
        near = np.flatnonzero(estimate <= estimate.min() + margin)
        diff = rows[near] - x
        return float(np.sqrt(np.einsum("ij,ij->i", diff, diff, dtype=np.float64).min()))

    def add(self, x: np.ndarray, distance: float) -> None:
        self._append(x)
        self._count += 1
        step = distance - self._mean
        self._mean += step / self._count
        self._m2 += step * (distance - self._mean)


def shapiro_statistic(distances: np.ndarray, trim_sigma: float | None = TRIM_SIGMA) -> float:
    """Shapiro-Wilk W of `distances`, without values more than `trim_sigma` std from their mean.

    W is 1.0 (no evidence against normality) when fewer than 3 values remain or they are all equal.
    """
    d = np.asarray(distances, dtype=np.float64)
    if trim_sigma is not None and len(d):
        mean, std = d.mean(), d.std()
        d = d[np.abs(d - mean) <= trim_sigma * std]
    if len(d) < 3 or float(np.ptp(d)) == 0.0:
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns that its p-value is approximate above n = 5000
        return float(stats.shapiro(d).statistic)


class PradaDetector:
    """PRADA's per-client state (Juuti et al., EuroS&P 2019): one detector per client (API key).

    Args:
        delta: the alarm threshold on the Shapiro-Wilk statistic W, in (0, 1]; the paper's MNIST value
            0.95 is the default. Higher flags sooner (and honest clients more often).
        min_queries: W is computed once the distance set D holds at least this many distances (100, the
            paper's); at least 3, the fewest Shapiro-Wilk accepts.

    Attributes:
        queries: queries observed so far.
        statistic: the latest W (None until D is large enough).
        flagged: True once W dropped below delta; stays True.
        flagged_at: the number of queries seen when it was first flagged (None if never).

    `observe` is thread-safe (one lock per client), so an HTTP service may feed a key's detector from
    concurrent requests.
    """

    def __init__(
        self,
        delta: float = DEFAULT_DELTA,
        min_queries: int = DEFAULT_MIN_QUERIES,
        *,
        trim_sigma: float | None = TRIM_SIGMA,
    ) -> None:
        self.delta = _check_delta(delta)
        if isinstance(min_queries, bool) or not isinstance(min_queries, int) or min_queries < 3:
            raise ConfigError(
                f"PRADA min_queries must be an int >= 3 (the paper uses 100), got {min_queries!r}"
            )
        if trim_sigma is not None and (isinstance(trim_sigma, bool) or not trim_sigma > 0):
            raise ConfigError(f"PRADA trim_sigma must be a positive number or None, got {trim_sigma!r}")
        self.min_queries = min_queries
        self.trim_sigma = trim_sigma
        self.queries = 0
        self.statistic: float | None = None
        self.flagged = False
        self.flagged_at: int | None = None
        self._sets: dict[int, _GrowingSet] = {}
        self._distances = np.empty(1024, np.float64)
        self._num_distances = 0
        self._dim: int | None = None
        self._lock = threading.Lock()

    @property
    def distances(self) -> np.ndarray:
        """A copy of D: each query's minimum distance to its class's growing set, in query order."""
        return self._distances[: self._num_distances].copy()

    @property
    def growing_set_sizes(self) -> dict[int, int]:
        """|G_c| per predicted class seen so far."""
        return {c: s.size for c, s in sorted(self._sets.items())}

    def observe(self, images: np.ndarray, classes: np.ndarray | Sequence[int]) -> bool:
        """Process queries `images` [n, C, H, W] (any [n, ...]) with the target's predicted `classes` [n],
        one by one in order; returns `flagged` (True once this client has ever been flagged)."""
        x, c = self._check(images, classes)
        with self._lock:
            for row, label in zip(x, c, strict=True):
                self._step(row, int(label))
        return self.flagged

    def _check(
        self, images: np.ndarray, classes: np.ndarray | Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(images, dtype=np.float32)
        c = np.asarray(classes)
        if x.ndim < 2:
            raise OracleError(f"PRADA expects images [n, C, H, W]; got shape {list(x.shape)}")
        x = x.reshape(len(x), -1)
        if c.shape != (len(x),) or (len(c) and (c.dtype.kind not in "iu" or c.min() < 0)):
            raise OracleError(
                f"PRADA expects one non-negative integer class per image ({len(x)}); got classes of "
                f"shape {list(c.shape)} and dtype {c.dtype}"
            )
        if len(x) and self._dim is not None and x.shape[1] != self._dim:
            raise OracleError(
                f"PRADA saw images of {self._dim} values per image from this client before; got {x.shape[1]}"
            )
        if len(x) and not np.isfinite(x).all():
            raise OracleError("PRADA: images contain NaN or infinite values")
        return x, c

    def _step(self, x: np.ndarray, label: int) -> float | None:
        """One query of the paper's Algorithm 1; returns W after it (None while |D| < min_queries)."""
        self._dim = x.size
        self.queries += 1
        grow = self._sets.get(label)
        if grow is None:
            self._sets[label] = _GrowingSet(x)
            return self._test()
        x_norm = float(np.dot(x.astype(np.float64), x))
        distance = grow.min_distance(x, x_norm)
        self._record(distance)
        if distance > grow.threshold:
            grow.add(x, distance)
        return self._test()

    def _record(self, distance: float) -> None:
        if self._num_distances == len(self._distances):
            self._distances = np.concatenate([self._distances, np.empty_like(self._distances)])
        self._distances[self._num_distances] = distance
        self._num_distances += 1

    def _test(self) -> float | None:
        if self._num_distances < self.min_queries:
            return None
        self.statistic = shapiro_statistic(self._distances[: self._num_distances], self.trim_sigma)
        if not self.flagged and self.statistic < self.delta:
            self.flagged, self.flagged_at = True, self.queries
        return self.statistic

    def trace(self, images: np.ndarray, classes: np.ndarray | Sequence[int]) -> np.ndarray:
        """Like `observe`, but returns W after each query [n] (NaN while |D| < min_queries)."""
        x, c = self._check(images, classes)
        out = np.full(len(x), np.nan)
        with self._lock:
            for i, (row, label) in enumerate(zip(x, c, strict=True)):
                w = self._step(row, int(label))
                out[i] = np.nan if w is None else w
        return out


def first_crossings(trace: np.ndarray, deltas: Iterable[float], offset: int = 0) -> dict[float, int | None]:
    """For each delta, the number of queries seen when W first fell below it (None if never).

    `trace` is W after each query (NaN before PRADA tests), as `PradaDetector.trace` returns it.
    """
    w = np.asarray(trace, dtype=np.float64)
    out: dict[float, int | None] = {}
    for delta in deltas:
        below = np.flatnonzero(np.nan_to_num(w, nan=np.inf) < _check_delta(delta))
        out[float(delta)] = None if not len(below) else int(below[0]) + 1 + offset
    return out


def replay(
    images: np.ndarray,
    classes: np.ndarray | Sequence[int],
    deltas: Iterable[float],
    *,
    min_queries: int = DEFAULT_MIN_QUERIES,
    trim_sigma: float | None = TRIM_SIGMA,
    batch: int = 4096,
) -> dict[float, int | None]:
    """Queries until PRADA flags a client sending `images` (in query order) for every delta, in one pass.

    PRADA's state never depends on delta (only the alarm does), so W is recorded after each query once
    and each delta reads its first crossing. `images` may be any `ImageRows` (an array, a `data.Pool`):
    it is read `batch` rows at a time. Returns {delta: queries seen when first flagged, or None}.
    """
    deltas = [_check_delta(d) for d in deltas]
    labels = np.asarray(classes)
    detector = PradaDetector(min(deltas) if deltas else DEFAULT_DELTA, min_queries, trim_sigma=trim_sigma)
    traces = [
        detector.trace(np.asarray(images[i : i + batch]), labels[i : i + batch])
        for i in range(0, len(labels), batch)
    ]
    return first_crossings(np.concatenate(traces) if traces else np.zeros(0), deltas)


class PradaBackend:
    """An oracle backend with PRADA watching its client: answers pass through unchanged, never refused.

    Every image the wrapped backend answers is fed to `detector` with the answer's argmax as its class,
    so `detector.flagged_at` says after how many queries the owner would have raised the alarm. Free
    evaluation answers of a model the user owns (`Oracle.evaluate`, request id "evaluation") are not
    the thief's traffic and are not fed; bought evaluation sets (`Oracle.buy_evaluation`) are queries
    the API sees, and are. The wrapped backend's `input_shape`, `num_classes`, `remote_mode` and `owned`
    are kept, and any other attribute (`replayable`, `probe_queries`, ...) is read from it.
    """

    def __init__(self, backend: Backend, detector: PradaDetector | None = None) -> None:
        self.backend = backend
        self.detector = detector if detector is not None else PradaDetector()
        self.input_shape: Shape = getattr(backend, "input_shape", DEFAULT_INPUT_SHAPE)
        self.num_classes: int = backend.num_classes
        self.remote_mode: OutputMode | None = backend.remote_mode
        self.owned: bool = bool(getattr(backend, "owned", False))

    def __getattr__(self, name: str) -> Any:
        if name == "backend":  # not set yet (copying, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.backend, name)

    def answer(self, images: np.ndarray, request_id: str) -> np.ndarray:
        answers = self.backend.answer(images, request_id)
        if request_id != EVALUATION_REQUEST_ID:
            probs = np.asarray(answers)
            # A malformed answer is the Oracle's to refuse (it names the shape); PRADA just skips it.
            if probs.shape == (len(images), self.num_classes) and np.isfinite(probs).all():
                self.detector.observe(images, probs.argmax(1))
        return answers
