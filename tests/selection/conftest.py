"""Shared fixtures for the selection tests: small random probability pools split into labelled/candidates."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from activethief import models
from activethief.selection import PoolView


@dataclass(frozen=True)
class Pool:
    """A selection request's arrays: probabilities over the pool, labelled and candidate indices."""

    probs: np.ndarray
    labelled: np.ndarray
    candidates: np.ndarray
    features: np.ndarray
    images: np.ndarray

    @property
    def view(self) -> PoolView:
        """Every input a strategy may declare: probabilities, penultimate-like features, images, a model."""
        model = models.build("mlp", self.probs.shape[1], seed=0)
        return PoolView(
            size=self.probs.shape[0],
            probs=self.probs,
            features=self.features,
            images=self.images,
            model=model,
        )


def dirichlet_pool(n: int = 120, classes: int = 4, n_labelled: int = 20, seed: int = 0) -> Pool:
    """Random softmax-like rows; candidates are the unlabelled rest, deliberately in shuffled order."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(classes, 0.5), size=n).astype(np.float32)
    order = rng.permutation(n).astype(np.int64)
    features = rng.normal(size=(n, 6)).astype(np.float32)
    images = rng.random((n, 1, 28, 28), dtype=np.float32)
    return Pool(probs, order[:n_labelled], order[n_labelled:], features, images)


@pytest.fixture
def make_pool() -> Callable[..., Pool]:
    return dirichlet_pool
