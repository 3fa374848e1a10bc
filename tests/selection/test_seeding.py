"""Seeders: the contract, `kmeans:N`'s farthest-from-centre rule, `pca-kmeans:N`'s balanced nearest picks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from activethief.errors import ConfigError
from activethief.selection import (
    KMeansSeeder,
    Need,
    PCAKMeansSeeder,
    PoolView,
    RandomSeeder,
    Seeder,
    make_seeder,
)

SEEDERS = ["random", "kmeans:4", "pca-kmeans:4", "typiclust", "probcover:4"]


def view(images: np.ndarray, probs: np.ndarray) -> PoolView:
    """The pool as a seeder sees it: its images and the untrained substitute's predictions."""
    return PoolView(size=len(probs), probs=probs, images=images)


def _pool(n: int = 150, classes: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.random((n, 1, 28, 28), dtype=np.float32)
    probs = rng.dirichlet(np.ones(classes), size=n).astype(np.float32)
    return images, probs


@pytest.mark.parametrize("name", SEEDERS)
def test_contract_k_unique_pool_indices_reproducible(name: str) -> None:
    images, probs = _pool()
    seeder = make_seeder(name)
    assert isinstance(seeder, Seeder) and seeder.name == name
    chosen = seeder.select(view(images, probs), 12, np.random.default_rng(5))
    assert chosen.dtype == np.int64 and chosen.shape == (12,)
    assert np.unique(chosen).size == 12
    assert ((chosen >= 0) & (chosen < 150)).all()
    np.testing.assert_array_equal(
        chosen, make_seeder(name).select(view(images, probs), 12, np.random.default_rng(5))
    )


@pytest.mark.parametrize("name", SEEDERS)
@pytest.mark.parametrize("k", [0, 151])
def test_impossible_k_is_a_config_error(name: str, k: int) -> None:
    images, probs = _pool()
    with pytest.raises(ConfigError, match="k"):
        make_seeder(name).select(view(images, probs), k, np.random.default_rng(0))


def test_an_input_with_the_wrong_row_count_is_refused() -> None:
    images, probs = _pool()
    with pytest.raises(ConfigError, match="probs have 149 rows for 150 points"):
        make_seeder("kmeans:4").select(PoolView(150, probs=probs[:-1]), 5, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="images have 149 rows for 150 points"):
        make_seeder("pca-kmeans:4").select(PoolView(150, images=images[:-1]), 5, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="needs the pool's images"):
        make_seeder("pca-kmeans:4").select(PoolView(150, probs=probs), 5, np.random.default_rng(0))


@pytest.mark.parametrize(
    ("name", "needs"),
    [
        ("random", set()),
        ("kmeans:4", {Need.PROBS}),
        ("pca-kmeans:4", {Need.IMAGES}),
        ("typiclust", {Need.IMAGES}),
        ("probcover:4", {Need.IMAGES}),
    ],
)
def test_seeders_declare_what_they_read(name: str, needs: set[Need]) -> None:
    assert make_seeder(name).needs == needs


def test_kmeans_seed_is_the_points_farthest_from_their_own_centre() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(3, dtype=np.float32)
    probs = centres[np.repeat(np.arange(3), 30)] + rng.normal(0, 0.01, (90, 3)).astype(np.float32)
    outliers = [7, 45, 80]
    probs[outliers] += np.array([[0, 0.3, 0], [0, 0, 0.25], [0.2, 0, 0]], dtype=np.float32)
    chosen = KMeansSeeder(3).select(
        view(np.zeros((90, 1, 2, 2), np.float32), probs), 3, np.random.default_rng(0)
    )
    assert set(chosen.tolist()) == set(outliers)
    np.testing.assert_array_equal(chosen, [7, 45, 80])  # ranked by distance: 0.3, 0.25, 0.2


@pytest.mark.filterwarnings("error")
def test_kmeans_on_identical_untrained_predictions_does_not_warn() -> None:
    probs = np.full((40, 10), 0.1, dtype=np.float32)
    chosen = make_seeder("kmeans:5").select(
        view(np.zeros((40, 1, 2, 2), np.float32), probs), 6, np.random.default_rng(0)
    )
    np.testing.assert_array_equal(chosen, np.arange(6))  # all distances 0: lowest indices


def _pattern_pool(sizes: list[int], seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images of distinct patterns (one per group) with noise growing with the position in the group."""
    rng = np.random.default_rng(seed)
    patterns = rng.random((len(sizes), 1, 28, 28)).astype(np.float32)
    group = np.repeat(np.arange(len(sizes)), sizes)
    rank_in_group = np.concatenate([np.arange(size) for size in sizes])
    noise = (
        rng.normal(0, 1, (group.size, 1, 28, 28)).astype(np.float32)
        * 0.002
        * (1 + rank_in_group)[:, None, None, None]
    )
    return patterns[group] + noise, group, rank_in_group


def test_pca_kmeans_takes_the_points_nearest_each_centre_in_equal_shares() -> None:
    images, group, rank_in_group = _pattern_pool([20, 20, 20])
    probs = np.full((60, 10), 0.1, dtype=np.float32)
    chosen = PCAKMeansSeeder(3).select(view(images, probs), 6, np.random.default_rng(0))
    np.testing.assert_array_equal(np.bincount(group[chosen], minlength=3), [2, 2, 2])
    assert (rank_in_group[chosen] < 2).all()  # the two least noisy of each group


def test_pca_kmeans_redistributes_the_share_of_a_small_cluster() -> None:
    images, group, _ = _pattern_pool([1, 20, 20])
    probs = np.full((41, 10), 0.1, dtype=np.float32)
    chosen = PCAKMeansSeeder(3).select(view(images, probs), 9, np.random.default_rng(0))
    np.testing.assert_array_equal(np.bincount(group[chosen], minlength=3), [1, 4, 4])


def test_random_seeder_uses_the_given_generator() -> None:
    images, probs = _pool()
    draws = {tuple(RandomSeeder().select(view(images, probs), 5, np.random.default_rng(s))) for s in range(5)}
    assert len(draws) == 5


def test_more_clusters_than_points_is_a_config_error() -> None:
    images, probs = _pool(n=8)
    with pytest.raises(ConfigError, match="at least 9 pool points"):
        make_seeder("kmeans:9").select(view(images, probs), 2, np.random.default_rng(0))


@pytest.mark.parametrize(
    "name", ["kmeans:abc", "kmeans:0", "kmeans", "pca-kmeans:", "random:3", "kmedoids:5", ""]
)
def test_bad_seeding_names_list_the_valid_forms(name: str) -> None:
    with pytest.raises(ConfigError, match=r"valid forms: random, kmeans:N, pca-kmeans:N"):
        make_seeder(name)


def test_seeder_names_round_trip() -> None:
    assert make_seeder("kmeans:10").name == "kmeans:10"
    assert make_seeder(" PCA-KMeans:7 ").name == "pca-kmeans:7"
    assert make_seeder("random").name == "random"


@pytest.mark.parametrize(
    "make", [lambda: KMeansSeeder(0), lambda: PCAKMeansSeeder(-2), lambda: PCAKMeansSeeder(3, components=0)]
)
def test_seeder_constructors_validate(make: Callable[[], Seeder]) -> None:
    with pytest.raises(ConfigError, match="positive integer"):
        make()


def test_pca_kmeans_on_a_tiny_pool() -> None:
    images = np.random.default_rng(0).random((5, 1, 2, 2), dtype=np.float32)
    chosen = make_seeder("pca-kmeans:2").select(
        view(images, np.full((5, 3), 1 / 3, np.float32)), 5, np.random.default_rng(0)
    )
    np.testing.assert_array_equal(np.sort(chosen), np.arange(5))
