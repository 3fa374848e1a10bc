"""k-center greedy: farthest-first picks on hand-made points, chunking invariance and bounded memory."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import numpy as np
import pytest

from activethief.errors import ConfigError
from activethief.selection import KCenter, kcenter, kcenter_greedy, min_sq_distances

NONE = np.empty(0, dtype=np.int64)

# Pool: 0 is labelled at one corner; 1 is next to it, 2 halfway, 3 at the far corner.
CORNERS = np.array([[1.0, 0.0], [0.9, 0.1], [0.5, 0.5], [0.0, 1.0]], dtype=np.float32)


def test_first_pick_is_the_point_farthest_from_the_labelled_ones() -> None:
    chosen = kcenter_greedy(CORNERS, np.array([0]), np.array([1, 2, 3]), 1, np.random.default_rng(0))
    np.testing.assert_array_equal(chosen, [3])


def test_each_pick_becomes_a_centre() -> None:
    # After 3 joins the centres, 2 (0.71 from both corners) is farther than 1 (0.14 from corner 0).
    chosen = kcenter_greedy(CORNERS, np.array([0]), np.array([1, 2, 3]), 2, np.random.default_rng(0))
    np.testing.assert_array_equal(chosen, [3, 2])


def test_without_labelled_points_it_starts_at_a_random_candidate_then_goes_far() -> None:
    line = np.array([[0.0, 1.0], [0.1, 0.9], [0.5, 0.5], [0.9, 0.1], [1.0, 0.0]], dtype=np.float32)
    firsts = set()
    for seed in range(10):
        chosen = KCenter().select(line, NONE, np.arange(5), 2, np.random.default_rng(seed))
        first, second = chosen
        expected_second = 4 if first < 2 else 0  # from the middle both ends tie: the lower index wins
        assert second == expected_second
        firsts.add(int(first))
    assert len(firsts) > 1


def test_all_labelled_points_are_initial_centres() -> None:
    points = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.05, 0.9, 0.05], [0.4, 0.3, 0.3]])
    # Candidate 3 is far from labelled 0 but next to labelled 1: only the whole labelled set rules it out.
    chosen = KCenter().select(
        points.astype(np.float32), np.array([0, 1, 2]), np.array([3, 4]), 1, np.random.default_rng(0)
    )
    np.testing.assert_array_equal(chosen, [4])


def test_exact_duplicates_are_never_picked_twice() -> None:
    points = np.tile(np.array([[0.3, 0.7]], dtype=np.float32), (10, 1))
    chosen = KCenter().select(points, np.array([0]), np.arange(1, 10), 9, np.random.default_rng(0))
    np.testing.assert_array_equal(np.sort(chosen), np.arange(1, 10))


@pytest.fixture(params=[7, 64, 4096], ids=lambda size: f"block{size}")
def block_size(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Run with tiny blocks too, so the lazy per-block refresh is exercised on small pools."""
    monkeypatch.setattr(kcenter, "_BLOCK", request.param)
    return int(request.param)


@pytest.mark.usefixtures("block_size")
@pytest.mark.parametrize("n_labelled", [0, 60])
def test_result_does_not_depend_on_chunk_size(n_labelled: int, make_pool: Callable) -> None:
    pool = make_pool(n=600, classes=10, n_labelled=n_labelled, seed=5)
    results = [
        KCenter(chunk_size=chunk).select(
            pool.probs, pool.labelled, pool.candidates, 40, np.random.default_rng(1)
        )
        for chunk in (1, 7, 64, 1000, 1 << 20)
    ]
    for result in results[1:]:
        np.testing.assert_array_equal(result, results[0])


@pytest.mark.usefixtures("block_size")
def test_initial_distances_match_brute_force_for_any_chunk_size(make_pool: Callable) -> None:
    pool = make_pool(n=300, classes=6, n_labelled=45, seed=2)
    x = pool.probs.astype(np.float64)
    brute = ((x[pool.candidates, None, :] - x[None, pool.labelled, :]) ** 2).sum(-1).min(axis=1)
    for chunk in (1, 10, 45, 46, 1 << 20):
        found = min_sq_distances(pool.probs, pool.labelled, pool.candidates, chunk_size=chunk)
        assert found.dtype == np.float32
        np.testing.assert_allclose(found, brute, atol=1e-6)


@pytest.mark.usefixtures("block_size")
@pytest.mark.parametrize("n_labelled", [0, 10])
def test_greedy_matches_a_naive_reference(n_labelled: int, make_pool: Callable) -> None:
    """Recompute every distance in float64 for each pick: the lazy running minimum must agree."""
    pool = make_pool(n=200, classes=5, n_labelled=n_labelled, seed=9)
    x = pool.probs.astype(np.float64)
    chosen = KCenter().select(pool.probs, pool.labelled, pool.candidates, 30, np.random.default_rng(0))
    centres = list(pool.labelled) or [chosen[0]]  # without labelled points the first pick is random
    expected = [] if n_labelled else [chosen[0]]
    while len(expected) < 30:
        remaining = np.sort(np.setdiff1d(pool.candidates, expected))
        dist = ((x[remaining, None, :] - x[None, centres, :]) ** 2).sum(-1).min(axis=1)
        expected.append(remaining[int(np.argmax(dist))])
        centres.append(expected[-1])
    np.testing.assert_array_equal(chosen, expected)


def test_memory_is_linear_in_the_pool_not_pool_times_labelled() -> None:
    rng = np.random.default_rng(0)
    n, n_labelled = 40_000, 2_000  # an N x L float32 matrix would be 320 MB
    probs = rng.dirichlet(np.ones(10), size=n).astype(np.float32)
    labelled, candidates = np.arange(n_labelled), np.arange(n_labelled, n)
    tracemalloc.start()
    try:
        KCenter(chunk_size=1 << 16).select(probs, labelled, candidates, 20, np.random.default_rng(0))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024  # a [12, N] working copy (~2 MB) and small scratch, nothing N x L


def test_chunk_size_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="chunk_size"):
        KCenter(chunk_size=0)


def test_kcenter_greedy_validates_like_a_strategy() -> None:
    with pytest.raises(ConfigError, match="cannot select k=4"):
        kcenter_greedy(CORNERS, np.array([0]), np.array([1, 2, 3]), 4, np.random.default_rng(0))
