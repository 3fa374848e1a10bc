"""Seeding: choose the first points to query, before the substitute has learnt anything.

Names: `random`, `kmeans:N` (the earlier study's rule), `pca-kmeans:N` (our variant), and the low-budget
cold starts of `activethief.selection.typical`: `typiclust` (Hacohen et al., ICML 2022) and `probcover:N`
(Yehuda et al., NeurIPS 2022). Like strategies, seeders work on arrays and return pool indices; all
randomness comes from the given rng.
"""

from __future__ import annotations

import re
import warnings
from abc import ABC, abstractmethod

import numpy as np
import numpy.typing as npt
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning

from activethief.errors import ConfigError
from activethief.selection.base import FloatArray, IndexArray, Need, PoolView, check_k, check_rng
from activethief.selection.selectors import equal_shares

SEEDING_FORMS: tuple[str, ...] = ("random", "kmeans:N", "pca-kmeans:N", "typiclust", "probcover:N")

_KMEANS_INITS = 3  # k-means restarts: enough to avoid a poor local optimum, cheap on 60k points
_PCA_COMPONENTS = 50


class Seeder(ABC):
    """Picks the initial seed set from the pool; subclasses implement `choose`.

    Attributes:
        name: The public name, e.g. "kmeans:10".
        needs: The inputs `choose` reads (`Need.PROBS`: the untrained substitute's predictions on the
            pool; `Need.IMAGES`: the pixels); the loop computes only these.
    """

    name: str
    needs: frozenset[Need] = frozenset({Need.PROBS})

    def select(self, view: PoolView, k: int, rng: np.random.Generator) -> IndexArray:
        """Pick `k` pool indices to query first.

        Args:
            view: What the seeder needs of the pool (`needs`): its images [N, ...] and/or the untrained
                substitute's predictions [N, C].
            k: Seed size, 1 <= k <= N.
            rng: The only source of randomness; the same seed gives the same result.

        Returns:
            int64 array of `k` unique pool indices.

        Raises:
            ConfigError: On mismatched or malformed arrays, NaN, or an impossible `k`.
        """
        if not isinstance(view, PoolView):
            raise ConfigError(f"a seeder selects from a PoolView, got {type(view).__name__}")
        view.check(self.needs)
        images = view.images
        if Need.IMAGES in self.needs and (not isinstance(images, np.ndarray) or images.ndim < 2):
            shape = images.shape if isinstance(images, np.ndarray) else type(images).__name__
            raise ConfigError(f"the pool's images must be an array [N, ...], got {shape}")
        k = check_k(k, view.size, "pool points")
        chosen = self.choose(view, k, check_rng(rng))
        assert chosen.shape == (k,) and chosen.dtype == np.int64, (self.name, chosen.shape)
        return chosen

    @abstractmethod
    def choose(self, view: PoolView, k: int, rng: np.random.Generator) -> IndexArray:
        """Pick `k` pool indices from a validated request (1 <= k <= N, shapes consistent)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class RandomSeeder(Seeder):
    """`k` pool points drawn uniformly at random without replacement."""

    name = "random"
    needs: frozenset[Need] = frozenset()

    def choose(self, view: PoolView, k: int, rng: np.random.Generator) -> IndexArray:
        return rng.choice(view.size, size=k, replace=False).astype(np.int64)


def _check_clusters(clusters: int) -> int:
    if isinstance(clusters, bool) or not isinstance(clusters, int) or clusters < 1:
        raise ConfigError(f"the number of k-means clusters must be a positive integer, got {clusters!r}")
    return clusters


def _cluster(
    features: FloatArray, clusters: int, rng: np.random.Generator, name: str
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """k-means on `features` [N, D]: each point's cluster and its distance to that cluster's centre."""
    if clusters > features.shape[0]:
        raise ConfigError(f"{name} needs at least {clusters} pool points to form {clusters} clusters")
    kmeans = KMeans(n_clusters=clusters, n_init=_KMEANS_INITS, random_state=int(rng.integers(2**31 - 1)))
    with warnings.catch_warnings():
        # Fewer distinct points than clusters (e.g. identical untrained predictions) is fine here.
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = kmeans.fit_predict(features).astype(np.int64)
    offsets = features - kmeans.cluster_centers_[labels].astype(features.dtype)
    distances = np.sqrt(np.einsum("ij,ij->i", offsets, offsets, dtype=np.float64))
    return labels, distances


class KMeansSeeder(Seeder):
    """`kmeans:N`, the earlier study's rule: the points farthest from their own k-means centre.

    k-means groups the untrained substitute's probabilities into N clusters; the seed is the `k` points
    farthest (L2) from their own cluster's centre, ranked over the whole pool (ties: lower index).

    Args:
        clusters: N, the number of k-means clusters.
    """

    def __init__(self, clusters: int) -> None:
        self.clusters = _check_clusters(clusters)
        self.name = f"kmeans:{clusters}"

    def choose(self, view: PoolView, k: int, rng: np.random.Generator) -> IndexArray:
        _, distances = _cluster(view.need_probs().astype(np.float32), self.clusters, rng, self.name)
        return np.argsort(-distances, kind="stable")[:k].astype(np.int64)


class PCAKMeansSeeder(Seeder):
    """`pca-kmeans:N`: representative, class-diverse seeds from the images themselves.

    PCA (randomized SVD, 50 components) of the flattened pixels, k-means into N clusters in that space,
    then an equal share of the `k` seeds per cluster, each cluster giving the points nearest its centre
    (ties: lower index). Shares follow `equal_shares`: a cluster smaller than its share gives all its
    points and the shortfall is re-split equally over the larger clusters; a final remainder smaller
    than the number of clusters goes to clusters drawn at random from `rng`.

    Args:
        clusters: N, the number of k-means clusters.
        components: PCA components kept (capped by the number of points and pixels).
    """

    def __init__(self, clusters: int, *, components: int = _PCA_COMPONENTS) -> None:
        if isinstance(components, bool) or not isinstance(components, int) or components < 1:
            raise ConfigError(f"PCA components must be a positive integer, got {components!r}")
        self.clusters = _check_clusters(clusters)
        self.components = components
        self.name = f"pca-kmeans:{clusters}"
        self.needs = frozenset({Need.IMAGES})

    def choose(self, view: PoolView, k: int, rng: np.random.Generator) -> IndexArray:
        pool = view.need(Need.IMAGES)
        pixels = pool.reshape(pool.shape[0], -1).astype(np.float32, copy=False)
        components = min(self.components, *pixels.shape)
        pca = PCA(n_components=components, svd_solver="randomized", random_state=int(rng.integers(2**31 - 1)))
        features = pca.fit_transform(pixels).astype(np.float32, copy=False)
        labels, distances = _cluster(features, self.clusters, rng, self.name)
        counts = np.bincount(labels, minlength=self.clusters).astype(np.int64)
        shares = equal_shares(counts, k, rng)
        # Group by cluster, nearest first within each cluster (lexsort: last key is primary; stable).
        order = np.lexsort((distances, labels))
        starts = np.concatenate(([0], np.cumsum(counts)))
        picks = [order[starts[c] : starts[c] + shares[c]] for c in np.flatnonzero(shares)]
        return np.concatenate(picks).astype(np.int64)


_FORM = re.compile(r"^(random|kmeans|pca-kmeans|typiclust|probcover)(?::(\d+))?$")


def make_seeder(name: str) -> Seeder:
    """Build a seeder from its name: `random`, `kmeans:N`, `pca-kmeans:N`, `typiclust` or `probcover:N`.

    N is a number of k-means clusters, N >= 1 (for `probcover:N`, the clusters that define a pure ball:
    the number of classes).

    Raises:
        ConfigError: For an unknown or malformed name, listing the valid forms.
    """
    match = _FORM.match(name.strip().lower()) if isinstance(name, str) else None
    kind, clusters = (match.group(1), match.group(2)) if match else (None, None)
    if kind == "random" and clusters is None:
        return RandomSeeder()
    if kind == "kmeans" and clusters is not None and int(clusters) >= 1:
        return KMeansSeeder(int(clusters))
    if kind == "pca-kmeans" and clusters is not None and int(clusters) >= 1:
        return PCAKMeansSeeder(int(clusters))
    # typical.py builds on Seeder, so it is imported here rather than at the top (a cycle otherwise).
    from activethief.selection.typical import ProbCoverSeeder, TypiClustSeeder

    if kind == "typiclust" and clusters is None:
        return TypiClustSeeder()
    if kind == "probcover" and clusters is not None and int(clusters) >= 1:
        return ProbCoverSeeder(int(clusters))
    raise ConfigError(
        f"unknown seeding {name!r}; valid forms: {', '.join(SEEDING_FORMS)} "
        "(N = number of clusters, a positive integer, e.g. kmeans:10)"
    )
