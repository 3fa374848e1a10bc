"""BADGE (Ash et al., 2020): gradient embeddings, factored distances, k-means++ picks."""

from __future__ import annotations

import numpy as np

from activethief.selection import Need, PoolView, make_strategy
from activethief.selection.badge import embedding_sq_distances


def test_factored_distances_equal_the_explicit_embeddings() -> None:
    rng = np.random.default_rng(0)
    residual, features = rng.normal(size=(7, 3)), rng.normal(size=(7, 5))
    embeddings = np.einsum("ic,id->icd", residual, features).reshape(7, -1)
    sq_norms = (residual**2).sum(1) * (features**2).sum(1)
    explicit = ((embeddings - embeddings[2]) ** 2).sum(1)
    np.testing.assert_allclose(embedding_sq_distances(residual, features, sq_norms, 2), explicit, atol=1e-9)


def test_badge_starts_at_the_largest_gradient_and_never_repeats() -> None:
    probs = np.array([[0.9, 0.1], [0.5, 0.5], [0.99, 0.01], [0.6, 0.4], [0.5, 0.5]], dtype=np.float32)
    features = np.array([[1.0, 0], [1, 0], [1, 0], [0, 1], [1, 0]], dtype=np.float32)
    view = PoolView(size=5, probs=probs, features=features)
    strategy = make_strategy("badge")
    assert strategy.needs == {Need.PROBS, Need.FEATURES}
    chosen = strategy.select(view, np.array([], np.int64), np.arange(5), 2, np.random.default_rng(0))
    assert chosen[0] == 1  # the largest |p - e| * |h| (1 and 4 tie: the lower index)
    assert (
        chosen[1] == 3
    )  # 4 coincides with 1 (distance 0); 3 is the only point far from it that is uncertain
    all_of_them = strategy.select(view, np.array([], np.int64), np.arange(5), 5, np.random.default_rng(0))
    assert sorted(all_of_them.tolist()) == [0, 1, 2, 3, 4]
