"""Low-budget cold starts: typical points (TypiClust) and greedy ball covers (ProbCover) of the pool.

With a seed of a few hundred queries, the points worth buying first are the dense, representative ones
rather than the uncertain or far-apart ones (Hacohen et al., "Active learning on a budget", ICML 2022).
Both seeders work in a representation of the pool learnt without any query: the papers use a
self-supervised embedding (SimCLR); we use a 50-component PCA of the pixels with each row scaled to unit
length (cosine geometry, as SimCLR's embeddings are), chosen by measurement
(`benchmarks/seeding_low_budget.py`): on MNIST and FashionMNIST it kept 20-nearest-neighbour label purity
of raw pixels (0.94 and 0.81) at a fraction of the cost, and random-convolution or untrained-network
features did no better.

- `TypiClustSeeder` (`typiclust`): k-means into one cluster per seed point, then the most typical point
  of each cluster; typicality is the inverse mean distance to the point's nearest neighbours inside its
  own cluster (Hacohen et al., ICML 2022).
- `ProbCoverSeeder` (`probcover:N`): balls of radius delta around every point; greedily take the point
  whose ball covers the most points not yet covered (Yehuda et al., "Active learning through a covering
  lens", NeurIPS 2022). delta is the largest radius at which 95% of balls are pure with respect to a
  k-means clustering into N clusters (N = the number of classes, as in the paper).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import numpy.typing as npt
from scipy import sparse
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.neighbors import NearestNeighbors

from activethief.errors import ConfigError
from activethief.selection.base import FloatArray, IndexArray, Need, PoolView
from activethief.selection.seeding import Seeder

FEATURE_COMPONENTS = 50  # PCA components of the representation (as `pca-kmeans:N`)
TYPICALITY_NEIGHBOURS = 20  # Hacohen et al.: K = 20 nearest neighbours
MAX_CLUSTERS = 500  # Hacohen et al. cap the clusters; beyond it clusters are too small for 20 neighbours
MIN_CLUSTER_SIZE = 5  # smaller k-means clusters are outliers: they give points only once others are spent
_FULL_KMEANS_LIMIT = 50  # up to this many clusters full k-means, above it mini-batch k-means (as the paper)
PURITY = 0.95  # Yehuda et al.: alpha, the share of pure balls that sets delta
_PURITY_ANCHORS = 2000  # balls whose purity is measured to set delta (a sample keeps it linear in N)
_DISTANCE_CHUNK = 256  # anchor rows per block of the anchor-to-pool distances (60k pool: 60 MB)


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))


def pool_features(
    images: FloatArray,
    rng: np.random.Generator,
    *,
    components: int = FEATURE_COMPONENTS,
    unit_length: bool = True,
) -> npt.NDArray[np.float32]:
    """The pool's representation: PCA (randomized SVD) of the flattened pixels, rows scaled to unit length.

    Args:
        images: The pool's pixels [N, ...].
        rng: Seeds the randomized SVD.
        components: PCA components kept (capped by the number of points and pixels).
        unit_length: Scale each row to unit L2 norm (False: plain PCA coordinates, for comparison).

    Returns:
        float32 [N, components]; a point on the PCA mean (a row of at most 1e-5 of the largest
        norm) stays zero.
    """
    pixels = images.reshape(images.shape[0], -1).astype(np.float32, copy=False)
    components = min(components, *pixels.shape)
    pca = PCA(n_components=components, svd_solver="randomized", random_state=_seed(rng))
    features: npt.NDArray[np.float32] = pca.fit_transform(pixels).astype(np.float32, copy=False)
    if not unit_length:
        return features
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    # A point on the PCA mean has a row of rounding noise, not a direction: it stays zero.
    floor = 1e-5 * float(norms.max(initial=0.0))
    unit: npt.NDArray[np.float32] = np.divide(
        features, norms, out=np.zeros_like(features), where=norms > floor
    )
    return unit


def typicality(features: FloatArray, neighbours: int = TYPICALITY_NEIGHBOURS) -> npt.NDArray[np.float64]:
    """Hacohen et al.'s typicality: 1 / (mean L2 distance to the `neighbours` nearest other points).

    Neighbours are capped at N - 1; a lone point has typicality 0 and a point with `neighbours`
    duplicates has typicality inf.

    Args:
        features: Points [N, D] (one cluster's, in TypiClust).
        neighbours: K, the number of nearest neighbours.

    Returns:
        float64 [N], higher for points in denser surroundings.
    """
    n = features.shape[0]
    k = min(neighbours, n - 1)
    if k < 1:
        return np.zeros(n, dtype=np.float64)
    distances, _ = NearestNeighbors(n_neighbors=k).fit(features).kneighbors()  # the point itself excluded
    mean = distances.astype(np.float64).mean(axis=1)
    scores: npt.NDArray[np.float64] = np.divide(1.0, mean, out=np.full(n, np.inf), where=mean > 0)
    return scores


def kmeans_labels(features: FloatArray, clusters: int, rng: np.random.Generator) -> npt.NDArray[np.int64]:
    """Each point's k-means cluster: full k-means up to 50 clusters, mini-batch k-means above (faster)."""
    seed = _seed(rng)
    kmeans: KMeans | MiniBatchKMeans
    if clusters <= _FULL_KMEANS_LIMIT:
        kmeans = KMeans(n_clusters=clusters, n_init=3, random_state=seed)
    else:
        kmeans = MiniBatchKMeans(n_clusters=clusters, n_init=3, batch_size=4096, random_state=seed)
    with warnings.catch_warnings():
        # Fewer distinct points than clusters (a tiny or degenerate pool) is fine: some clusters stay empty.
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels: npt.NDArray[np.int64] = kmeans.fit_predict(features).astype(np.int64)
    return labels


def typical_order(labels: npt.NDArray[np.int64], scores: npt.NDArray[np.float64]) -> IndexArray:
    """Pool indices in TypiClust's picking order: round-robin over clusters, most typical first.

    Pass r takes the r-th most typical point of every cluster, largest clusters first; clusters smaller
    than `MIN_CLUSTER_SIZE` come after every larger cluster is spent. Ties: lower cluster id, lower index.
    """
    n = labels.size
    by_cluster = np.lexsort((np.arange(n), -scores, labels))  # grouped by cluster, most typical first
    sizes = np.bincount(labels)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    rank = np.empty(n, dtype=np.int64)
    rank[by_cluster] = np.arange(n) - starts[labels[by_cluster]]
    size = sizes[labels]
    return np.lexsort((np.arange(n), labels, -size, rank, size < MIN_CLUSTER_SIZE)).astype(np.int64)


class TypiClustSeeder(Seeder):
    """`typiclust`: the most typical point of each of k k-means clusters (Hacohen et al., ICML 2022).

    The pool's representation (`pool_features`) is clustered into min(k, 500, N) clusters; each cluster's
    points are scored by `typicality` within the cluster and `typical_order` picks round-robin, so a
    seed of k <= 500 takes one typical point per cluster and larger seeds take the next most typical.

    Args:
        neighbours: K of `typicality`.
        max_clusters: The most k-means clusters.
        unit_length: The representation's row scaling (`pool_features`).
    """

    name = "typiclust"
    needs: frozenset[Need] = frozenset({Need.IMAGES})

    def __init__(
        self,
        *,
        neighbours: int = TYPICALITY_NEIGHBOURS,
        max_clusters: int = MAX_CLUSTERS,
        unit_length: bool = True,
    ) -> None:
        for what, value in (("typicality neighbours", neighbours), ("the cluster cap", max_clusters)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{what} must be a positive integer, got {value!r}")
        self.neighbours, self.max_clusters, self.unit_length = neighbours, max_clusters, unit_length

    def choose(self, view: PoolView, k: int, rng: np.random.Generator) -> IndexArray:
        features = pool_features(view.need(Need.IMAGES), rng, unit_length=self.unit_length)
        labels = kmeans_labels(features, min(k, self.max_clusters, view.size), rng)
        scores = np.zeros(view.size, dtype=np.float64)
        order = np.argsort(labels, kind="stable")
        bounds = np.flatnonzero(np.diff(labels[order])) + 1
        for members in np.split(order, bounds):
            scores[members] = typicality(features[members], self.neighbours)
        return typical_order(labels, scores)[:k]


def purity_radius(
    features: FloatArray, labels: npt.NDArray[np.int64], rng: np.random.Generator, purity: float = PURITY
) -> float:
    """Yehuda et al.'s delta: the largest radius at which a share `purity` of balls is pure.

    A ball B(x, delta) is pure when every point in it shares x's cluster, i.e. when delta is below x's
    distance to the nearest point of another cluster; delta is the (1 - purity) quantile of that distance
    over `_PURITY_ANCHORS` points drawn from `rng`. With a single cluster every ball is pure: inf.
    """
    n = features.shape[0]
    anchors = np.sort(rng.choice(n, size=min(n, _PURITY_ANCHORS), replace=False))
    features = features.astype(np.float32, copy=False)
    squared = np.einsum("ij,ij->i", features, features)
    nearest_other = np.full(anchors.size, np.inf)
    for start in range(0, anchors.size, _DISTANCE_CHUNK):
        rows = anchors[start : start + _DISTANCE_CHUNK]
        block = squared[rows, None] - 2 * (features[rows] @ features.T) + squared[None, :]
        block[labels[rows, None] == labels[None, :]] = np.inf
        nearest_other[start : start + rows.size] = np.sqrt(np.maximum(block.min(axis=1), 0.0))
    return float(np.quantile(nearest_other, 1.0 - purity, method="lower"))


def greedy_cover(graph: sparse.csr_matrix, k: int, rng: np.random.Generator) -> IndexArray:
    """ProbCover's greedy max coverage on a symmetric ball graph (each row: the points in that ball).

    Each pick is the point whose ball holds the most uncovered points (ties: lower index); once every
    point is covered, the rest of the `k` are drawn uniformly from `rng` among the points not picked.
    Coverage counts are updated from the newly covered points only, so the whole cover costs one pass
    over the graph's edges.
    """
    n = graph.shape[0]
    counts = np.diff(graph.indptr).astype(np.int64)  # uncovered points in each ball (all, at first)
    covered = np.zeros(n, dtype=bool)
    picked: list[int] = []
    while len(picked) < k and counts.max() > 0:
        point = int(np.argmax(counts))
        picked.append(point)
        ball = graph.indices[graph.indptr[point] : graph.indptr[point + 1]]
        new = ball[~covered[ball]]
        covered[new] = True
        counts -= np.bincount(graph[new].indices, minlength=n)  # symmetric: the balls that held them
    rest = np.setdiff1d(np.arange(n), picked)
    extra = rng.choice(rest, size=k - len(picked), replace=False)
    return np.concatenate((np.asarray(picked, dtype=np.int64), extra.astype(np.int64)))


class ProbCoverSeeder(Seeder):
    """`probcover:N`: a greedy cover of the pool by pure balls (Yehuda et al., NeurIPS 2022).

    In the pool's representation (`pool_features`), delta comes from `purity_radius` over a k-means
    clustering into N clusters (the number of classes, as in the paper), unless given; `greedy_cover`
    then picks the `k` ball centres.

    Args:
        clusters: N, the k-means clusters that define a pure ball.
        delta: The ball radius (distances in the unit-length representation are at most 2); None: by
            purity.
        unit_length: The representation's row scaling (`pool_features`).
    """

    needs: frozenset[Need] = frozenset({Need.IMAGES})

    def __init__(self, clusters: int, *, delta: float | None = None, unit_length: bool = True) -> None:
        if isinstance(clusters, bool) or not isinstance(clusters, int) or clusters < 1:
            raise ConfigError(f"the number of k-means clusters must be a positive integer, got {clusters!r}")
        valid = isinstance(delta, float | int) and not isinstance(delta, bool) and 0 < delta < math.inf
        if delta is not None and not valid:
            raise ConfigError(f"the ball radius delta must be a positive finite number, got {delta!r}")
        self.clusters, self.delta, self.unit_length = clusters, delta, unit_length
        self.name = f"probcover:{clusters}"

    def choose(self, view: PoolView, k: int, rng: np.random.Generator) -> IndexArray:
        features = pool_features(view.need(Need.IMAGES), rng, unit_length=self.unit_length)
        delta = self.delta
        if delta is None:
            if self.clusters > view.size:
                raise ConfigError(f"{self.name} needs at least {self.clusters} pool points")
            labels = kmeans_labels(features, self.clusters, rng)
            delta = purity_radius(features, labels, rng)
            if math.isinf(delta):  # one cluster: every ball is pure and one covers the pool
                return rng.choice(view.size, size=k, replace=False).astype(np.int64)
        balls = NearestNeighbors(radius=delta).fit(features).radius_neighbors_graph(mode="connectivity")
        graph = sparse.csr_matrix(balls + sparse.identity(view.size, format="csr"))  # X=None leaves self out
        return greedy_cover(graph, k, rng)
