"""BADGE: batch active learning by diverse gradient embeddings (Ash et al., ICLR 2020).

Each candidate's embedding is the gradient of the cross-entropy loss with respect to the last layer's
weights, taking the substitute's own prediction as the label: `g = (p - e_argmax p) ⊗ h`, with `h` the
penultimate features. Its norm is large where the substitute is uncertain, and its direction differs
where the points differ, so k-means++ seeding over the embeddings picks points that are both uncertain
and diverse. Distances between outer products factor,
`||a⊗b - c⊗d||² = |a|²|b|² + |c|²|d|² - 2 (a·c)(b·d)`, so the C * D embeddings are never built.
"""

from __future__ import annotations

import numpy as np

from activethief.selection.base import IndexArray, Need, PoolView, Strategy


def embedding_sq_distances(
    residual: np.ndarray, features: np.ndarray, sq_norms: np.ndarray, i: int
) -> np.ndarray:
    """Squared distances [n] from every embedding `residual[j] ⊗ features[j]` to embedding `i`."""
    cross = (residual @ residual[i]) * (features @ features[i])
    distances: np.ndarray = np.maximum(sq_norms + sq_norms[i] - 2.0 * cross, 0.0)
    return distances


class Badge(Strategy):
    """`badge`: k-means++ seeding over last-layer gradient embeddings; the first pick is the largest
    gradient, each next one drawn with probability proportional to its squared distance to the picks."""

    name = "badge"
    needs: frozenset[Need] = frozenset({Need.PROBS, Need.FEATURES})

    def choose(
        self,
        view: PoolView,
        labelled: IndexArray,
        candidates: IndexArray,
        k: int,
        rng: np.random.Generator,
    ) -> IndexArray:
        probs = view.need_probs()[candidates].astype(np.float64)
        residual = probs.copy()
        residual[np.arange(len(candidates)), probs.argmax(1)] -= 1.0  # p - e_yhat
        features = np.asarray(view.need(Need.FEATURES)[candidates], dtype=np.float64)
        sq_norms = (residual**2).sum(1) * (features**2).sum(1)
        picks = [int(np.argmax(sq_norms))]
        nearest = np.full(len(candidates), np.inf)
        for _ in range(1, k):
            nearest = np.minimum(nearest, embedding_sq_distances(residual, features, sq_norms, picks[-1]))
            nearest[picks] = 0.0
            total = nearest.sum()
            if total > 0:
                picks.append(int(rng.choice(len(candidates), p=nearest / total)))
            else:  # every candidate left coincides with a pick: any of them will do
                left = np.setdiff1d(np.arange(len(candidates)), picks)
                picks.append(int(rng.choice(left)))
        return candidates[np.array(picks, dtype=np.int64)]
