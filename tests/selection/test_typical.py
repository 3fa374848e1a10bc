"""Low-budget seeders: typicality and TypiClust's order, ProbCover's radius and cover, on hand-made arrays."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy import sparse

from activethief.errors import ConfigError
from activethief.selection import PoolView, make_seeder
from activethief.selection.typical import (
    ProbCoverSeeder,
    TypiClustSeeder,
    greedy_cover,
    pool_features,
    purity_radius,
    typical_order,
    typicality,
)


def _blobs(sizes: list[int], seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images of one pattern per blob, noise growing with the position in the blob (0: its clean centre)."""
    rng = np.random.default_rng(seed)
    patterns = rng.random((len(sizes), 1, 8, 8)).astype(np.float32)
    blob = np.repeat(np.arange(len(sizes)), sizes)
    position = np.concatenate([np.arange(size) for size in sizes])
    noise = rng.normal(0, 0.01, (blob.size, 1, 8, 8)).astype(np.float32) * (1 + position)[:, None, None, None]
    return patterns[blob] + noise, blob, position


def _view(images: np.ndarray) -> PoolView:
    return PoolView(size=len(images), images=images)


def test_typicality_is_the_inverse_mean_distance_to_the_nearest_neighbours() -> None:
    points = np.array([[0.0], [1.0], [3.0]])
    np.testing.assert_allclose(typicality(points, 1), [1.0, 1.0, 0.5])
    np.testing.assert_allclose(typicality(points, 2), [1 / 2.0, 1 / 1.5, 1 / 2.5])
    np.testing.assert_allclose(typicality(points, 20), typicality(points, 2))  # capped at N - 1


def test_typicality_of_a_lone_point_and_of_duplicates() -> None:
    np.testing.assert_array_equal(typicality(np.ones((1, 3)), 20), [0.0])
    np.testing.assert_array_equal(typicality(np.zeros((3, 2)), 2), [np.inf, np.inf, np.inf])


def test_typical_order_goes_round_robin_largest_clusters_first_small_ones_last() -> None:
    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2])
    scores = np.array([1, 6, 5, 4, 3, 2, 5, 4, 3, 2, 1, 9, 8], dtype=np.float64)
    order = typical_order(labels, scores)
    # Cluster 0 (6 points) before cluster 1 (5) in every pass; cluster 2 (2 < 5 points) after both.
    np.testing.assert_array_equal(order, [1, 6, 2, 7, 3, 8, 4, 9, 5, 10, 0, 11, 12])


def test_typical_order_breaks_ties_by_cluster_then_index() -> None:
    labels = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
    order = typical_order(labels, np.ones(10))
    np.testing.assert_array_equal(order, [5, 0, 6, 1, 7, 2, 8, 3, 9, 4])


def test_typiclust_takes_each_blobs_dense_centre_not_an_outlier() -> None:
    images, blob, position = _blobs([30, 30])
    chosen = TypiClustSeeder().select(_view(images), 2, np.random.default_rng(0))
    assert sorted(blob[chosen].tolist()) == [0, 1]
    assert (position[chosen] < 3).all(), position[chosen]  # among the cleanest, never the noisy tail


def test_typiclust_with_more_seeds_than_clusters_takes_the_next_most_typical() -> None:
    images, blob, _ = _blobs([20, 20, 20])
    chosen = TypiClustSeeder(max_clusters=3).select(_view(images), 9, np.random.default_rng(0))
    np.testing.assert_array_equal(np.bincount(blob[chosen], minlength=3), [3, 3, 3])
    assert np.unique(chosen).size == 9


def test_purity_radius_is_the_quantile_of_the_distance_to_another_cluster() -> None:
    features = np.array([[0.0], [0.1], [0.2], [1.0], [1.5]], dtype=np.float32)
    labels = np.array([0, 0, 0, 1, 1])
    # Distances to the nearest point of the other cluster, sorted: 0.8, 0.8, 0.9, 1.0, 1.3.
    assert purity_radius(features, labels, np.random.default_rng(0), purity=0.6) == pytest.approx(0.8)
    assert purity_radius(features, labels, np.random.default_rng(0), purity=0.2) == pytest.approx(1.0)
    assert purity_radius(features, np.zeros(5, np.int64), np.random.default_rng(0)) == np.inf


def _ball_graph(points: np.ndarray, delta: float) -> sparse.csr_matrix:
    within = np.abs(points[:, None] - points[None, :]) <= delta
    return sparse.csr_matrix(within.astype(np.int8))


def test_greedy_cover_takes_the_fullest_ball_first_and_covers_every_ball() -> None:
    points = np.array([0.0, 0.5, 1.0, 1.5, 10.0, 10.5, 20.0])
    graph = _ball_graph(points, 0.6)
    chosen = greedy_cover(graph, 3, np.random.default_rng(0))
    # 0.5's ball holds 3 points {0, .5, 1}; then 10's holds 2 uncovered; then the balls of 1.0 and 1.5
    # (uncovered: 1.5) and of 20 hold one each, and the tie goes to the lowest index (1.0's ball)
    np.testing.assert_array_equal(chosen, [1, 4, 2])
    full = greedy_cover(graph, 4, np.random.default_rng(0))
    np.testing.assert_array_equal(full, [1, 4, 2, 6])
    assert (np.abs(points[:, None] - points[full][None, :]) <= 0.6).any(axis=1).all()


def test_greedy_cover_draws_the_rest_from_the_rng_once_everything_is_covered() -> None:
    graph = sparse.csr_matrix(np.ones((6, 6), dtype=np.int8))
    chosen = greedy_cover(graph, 4, np.random.default_rng(0))
    assert chosen[0] == 0 and np.unique(chosen).size == 4
    np.testing.assert_array_equal(chosen, greedy_cover(graph, 4, np.random.default_rng(0)))


def test_probcover_centres_one_ball_per_blob() -> None:
    images, blob, _ = _blobs([25, 25, 25])
    chosen = make_seeder("probcover:3").select(_view(images), 3, np.random.default_rng(0))
    np.testing.assert_array_equal(np.sort(blob[chosen]), [0, 1, 2])


def test_probcover_with_a_given_radius() -> None:
    images = _blobs([25, 25])[0]
    chosen = ProbCoverSeeder(2, delta=2.0).select(_view(images), 3, np.random.default_rng(0))
    assert np.unique(chosen).size == 3  # one ball covers the whole sphere; the rest are random


def test_pool_features_are_unit_length_and_keep_the_zero_row() -> None:
    images = np.random.default_rng(0).random((10, 1, 4, 4), dtype=np.float32)
    images[3] = images[[0, 1, 2, 4, 5, 6, 7, 8, 9]].mean(axis=0)  # on the mean: a zero PCA row
    features = pool_features(images, np.random.default_rng(0), components=5)
    assert features.shape == (10, 5) and features.dtype == np.float32
    norms = np.linalg.norm(features, axis=1)
    np.testing.assert_allclose(np.delete(norms, 3), 1.0, rtol=1e-5)
    assert norms[3] < 0.1  # all but the rounding of a point on the mean


@pytest.mark.parametrize("name", ["typiclust", "probcover:3"])
def test_degenerate_pools_still_give_k_unique_points(name: str) -> None:
    for images, k in ((np.zeros((30, 1, 4, 4), np.float32), 7), (_blobs([3, 2])[0], 5)):
        chosen = make_seeder(name).select(_view(images), k, np.random.default_rng(0))
        assert chosen.dtype == np.int64 and np.unique(chosen).size == k


@pytest.mark.parametrize("name", ["typiclust", "probcover:3"])
def test_same_rng_same_seed(name: str) -> None:
    images = np.random.default_rng(1).random((200, 1, 28, 28), dtype=np.float32)
    first = make_seeder(name).select(_view(images), 20, np.random.default_rng(7))
    np.testing.assert_array_equal(
        first, make_seeder(name).select(_view(images), 20, np.random.default_rng(7))
    )


def test_probcover_needs_as_many_points_as_clusters() -> None:
    with pytest.raises(ConfigError, match="at least 9 pool points"):
        make_seeder("probcover:9").select(_view(_blobs([4, 4])[0]), 2, np.random.default_rng(0))


@pytest.mark.parametrize("name", ["typiclust:5", "probcover", "probcover:0", "probcover:x", "typiclus"])
def test_bad_names_list_the_new_forms(name: str) -> None:
    with pytest.raises(ConfigError, match=r"valid forms: .*typiclust, probcover:N"):
        make_seeder(name)


def test_names_round_trip() -> None:
    assert make_seeder(" TypiClust ").name == "typiclust"
    assert make_seeder("probcover:10").name == "probcover:10"


@pytest.mark.parametrize(
    "make",
    [
        lambda: TypiClustSeeder(neighbours=0),
        lambda: TypiClustSeeder(max_clusters=True),
        lambda: ProbCoverSeeder(0),
        lambda: ProbCoverSeeder(3, delta=0.0),
        lambda: ProbCoverSeeder(3, delta=float("nan")),
        lambda: ProbCoverSeeder(3, delta=True),
    ],
)
def test_constructors_validate(make: Callable[[], object]) -> None:
    with pytest.raises(ConfigError, match=r"positive integer|delta"):
        make()
