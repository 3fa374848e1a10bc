"""k-center greedy (farthest-first) selection in the substitute's probability space, linear in pool size.

Distance is Euclidean between probability rows (we compare squared distances, which pick the same
points). The centres start as all labelled points; each pick is the candidate farthest from its nearest
centre, and becomes a centre itself. Memory stays linear in the pool: a running minimum distance per
candidate (float32) into which each centre's distances are folded once, in tiles of bounded size, never
as an N x N or N x L matrix. `_RunningMinimum` defers and batches those folds per block of candidates,
which picks the same points with far less memory traffic (benchmarks/kcenter_speed.py measures it).
"""

from __future__ import annotations

import contextlib

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

from activethief.errors import ConfigError
from activethief.selection.base import FloatArray, IndexArray, Need, PoolView, Strategy

F32Array = npt.NDArray[np.float32]

DEFAULT_CHUNK_SIZE = 1 << 20  # distance entries computed at once: 4 MiB of float32 scratch
_FILL_ROWS = 1 << 16  # candidate rows copied into the working layout at a time
_BLOCK = 4096  # candidates per lazily refreshed block (measured: 2k-16k all fine on 60k-1M pools)


def _augmented_centres(centres: F32Array) -> F32Array:
    """[-2c, 1, |c|^2] rows [n, D+2]: their dot product with an augmented candidate is |x - c|^2."""
    out = np.empty((centres.shape[0], centres.shape[1] + 2), dtype=np.float32)
    out[:, :-2] = -2.0 * centres
    out[:, -2] = 1.0
    out[:, -1] = np.einsum("ij,ij->i", centres, centres)
    return out


def _augmented_candidates(points: FloatArray, candidates: IndexArray) -> F32Array:
    """Candidates as columns [x; |x|^2; 1] of a [D+2, M] float32 array.

    In this layout a block of candidates is a contiguous slice of each row, which the products stream.
    """
    dims = points.shape[1]
    out = np.empty((dims + 2, candidates.size), dtype=np.float32)
    for start in range(0, candidates.size, _FILL_ROWS):
        stop = min(start + _FILL_ROWS, candidates.size)
        block = points[candidates[start:stop]].astype(np.float32, copy=False)
        out[:dims, start:stop] = block.T
        out[dims, start:stop] = np.einsum("ij,ij->i", block, block)
        out[dims + 1, start:stop] = 1.0
    return out


class _RunningMinimum:
    """Squared distance from each candidate to its nearest centre, updated lazily block by block.

    Candidates are split into blocks of `_BLOCK`. Each block remembers how many centres it has folded in
    and the largest distance it held at that moment. Distances only shrink as centres are added, so that
    stale maximum is an upper bound on the block's true maximum: to find the farthest candidate, refresh
    the block with the largest bound until that block is up to date; its maximum is then the global one.
    Every centre is still compared with every candidate exactly once (as in the eager update), but a
    refresh folds all centres added since the block's last refresh in one matrix product, and blocks far
    below the current radius are refreshed rarely. That cuts memory traffic several-fold on large pools.
    """

    def __init__(self, augmented: F32Array, max_centres: int, chunk_size: int) -> None:
        self.augmented = augmented
        self.chunk_size = chunk_size
        self.centres = np.empty((max_centres, augmented.shape[0]), dtype=np.float32)
        self.count = 0
        self.min_dist = np.full(augmented.shape[1], np.inf, dtype=np.float32)
        n_blocks = -(-augmented.shape[1] // _BLOCK)
        self.bound = np.full(n_blocks, np.inf, dtype=np.float32)
        self.folded = np.zeros(n_blocks, dtype=np.int64)  # centres already folded into each block

    def add_centres(self, centres: F32Array) -> None:
        """Append centres (raw coordinates [n, D]); they are folded into the blocks lazily."""
        self.centres[self.count : self.count + centres.shape[0]] = _augmented_centres(centres)
        self.count += centres.shape[0]

    def refresh(self, block: int) -> None:
        """Fold the centres this block has not seen yet, in tiles of at most `chunk_size` entries."""
        start, stop = block * _BLOCK, min((block + 1) * _BLOCK, self.min_dist.size)
        block_min = self.min_dist[start:stop]
        group = max(1, self.chunk_size // (stop - start))
        for first in range(int(self.folded[block]), self.count, group):
            tile = self.centres[first : min(first + group, self.count)] @ self.augmented[:, start:stop]
            np.minimum(block_min, tile.min(axis=0), out=block_min)
        self.folded[block] = self.count
        self.bound[block] = block_min.max()

    def refresh_all(self) -> F32Array:
        """Fold every centre into every block; returns the up-to-date minimum distances."""
        for block in range(self.bound.size):
            self.refresh(block)
        return self.min_dist

    def farthest(self) -> int:
        """Position of the candidate farthest from all centres (ties: the lowest position)."""
        while True:
            block = int(np.argmax(self.bound))
            if self.folded[block] == self.count:
                start = block * _BLOCK
                return start + int(np.argmax(self.min_dist[start : start + _BLOCK]))
            self.refresh(block)

    def retire(self, position: int) -> None:
        """Never return this candidate again (it is now a centre), even among exact duplicates."""
        self.min_dist[position] = -np.inf


def min_sq_distances(
    points: FloatArray, labelled: IndexArray, candidates: IndexArray, *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> F32Array:
    """Squared distance from each candidate to its nearest labelled point, float32 [M] (inf if none).

    Computed in tiles of at most `max(chunk_size, 4096)` candidate-centre pairs: memory O(M + L + tile).
    Indices must be valid pool indices (as `Strategy.select` checks them).
    """
    running = _RunningMinimum(_augmented_candidates(points, candidates), labelled.size, chunk_size)
    running.add_centres(points[labelled].astype(np.float32, copy=False))
    return running.refresh_all()


def _greedy(
    points: FloatArray,
    labelled: IndexArray,
    candidates: IndexArray,
    k: int,
    rng: np.random.Generator,
    chunk_size: int,
) -> IndexArray:
    augmented = _augmented_candidates(points, candidates)
    running = _RunningMinimum(augmented, labelled.size + k, chunk_size)
    running.add_centres(points[labelled].astype(np.float32, copy=False))
    picks = np.empty(k, dtype=np.int64)
    for i in range(k):
        # With no centre yet (nothing labelled), start anywhere.
        pick = running.farthest() if running.count else int(rng.integers(candidates.size))
        picks[i] = pick
        running.add_centres(augmented[:-2, pick][np.newaxis, :])
        running.retire(pick)
    return candidates[picks]


def kcenter_greedy(
    points: FloatArray,
    labelled: npt.ArrayLike,
    candidates: npt.ArrayLike,
    k: int,
    rng: np.random.Generator,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> IndexArray:
    """Pick `k` candidates by farthest-first traversal from the labelled points.

    Args:
        points: Pool embeddings [N, D] (here: the substitute's probabilities); used as float32.
        labelled: Pool indices of the initial centres (may be empty: start from a random candidate).
        candidates: Pool indices to pick from, disjoint from `labelled`.
        k: Number of picks.
        rng: Only used for the first pick when there are no labelled points.
        chunk_size: Most candidate-centre distances held at once (at least one block of 4096).

    Returns:
        int64 pool indices in pick order.

    Example:
        >>> probs = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]], dtype=np.float32)
        >>> kcenter_greedy(probs, np.array([0]), np.array([1, 2]), 1, np.random.default_rng(0))
        array([2])
    """
    return KCenter(chunk_size=chunk_size).select(points, labelled, candidates, k, rng)


class KCenter(Strategy):
    """k-center greedy: diverse picks, each the candidate farthest from everything chosen so far.

    The core-set selection of Sener & Savarese (ICLR 2018), greedy version, as ActiveThief (Pal et al.,
    AAAI 2020) uses it: in the space of the substitute's probabilities by default (`kcenter`), or of its
    penultimate-layer features (`kcenter@features`, the core-set paper's space).

    Args:
        space: `Need.PROBS` or `Need.FEATURES`: the points distances are measured between.
        chunk_size: Most candidate-centre distances held at once (at least one block of 4096); memory
            depends on it, the picks do not.
        blas_threads: BLAS threads while selecting (None: leave the process setting alone). The default
            of 1 is deliberate: the products are small and memory-bound, and on a busy machine (other
            processes, or an experiment process pool) multi-threaded OpenBLAS was measured 10-15x slower.
        name: The public name (default `kcenter` or `kcenter@features` by space; `coreset` is the latter).
    """

    def __init__(
        self,
        *,
        space: Need = Need.PROBS,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        blas_threads: int | None = 1,
        name: str | None = None,
    ) -> None:
        if space not in (Need.PROBS, Need.FEATURES):
            raise ConfigError(f"k-center runs on probabilities or features, not {space}")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ConfigError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        if blas_threads is not None and (
            isinstance(blas_threads, bool) or not isinstance(blas_threads, int) or blas_threads < 1
        ):
            raise ConfigError(f"blas_threads must be a positive integer or None, got {blas_threads!r}")
        self.chunk_size = chunk_size
        self.blas_threads = blas_threads
        self.space = space
        self.needs = frozenset({space})
        self.name = name or ("kcenter" if space is Need.PROBS else "kcenter@features")

    def choose(
        self,
        view: PoolView,
        labelled: IndexArray,
        candidates: IndexArray,
        k: int,
        rng: np.random.Generator,
    ) -> IndexArray:
        limits = (
            contextlib.nullcontext()
            if self.blas_threads is None
            else threadpool_limits(limits=self.blas_threads, user_api="blas")
        )
        with limits:
            return _greedy(view.need(self.space), labelled, candidates, k, rng, self.chunk_size)
