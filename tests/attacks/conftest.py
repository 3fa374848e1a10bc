"""Tiny models for the attack tests, trained once per session on slices of MNIST (a few seconds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from torch import nn

from activethief import models
from activethief.training import FitConfig, fit

Mnist = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _train(arch: str, x: np.ndarray, y: np.ndarray, seed: int) -> nn.Module:
    model = models.build(arch, 10, seed=seed)
    fit(model, x, y, config=FitConfig(epochs=2, val_fraction=0.0), seed=seed)
    return model.eval()


@pytest.fixture(scope="session")
def substitute(mnist_small: Mnist) -> nn.Module:
    """cnn2 trained 2 epochs on 2,000 MNIST images (about 85% test accuracy)."""
    x, y, _, _ = mnist_small
    return _train("cnn2", x[:2000], y[:2000], seed=0)


@pytest.fixture(scope="session")
def target_model(mnist_small: Mnist) -> nn.Module:
    """A different model (LeNet-style, other images) playing the black-box target."""
    x, y, _, _ = mnist_small
    return _train("lenet", x[1000:3000], y[1000:3000], seed=1)


@pytest.fixture(scope="session")
def model_files(
    tmp_path_factory: pytest.TempPathFactory, substitute: nn.Module, target_model: nn.Module
) -> dict[str, Path]:
    """The two tiny models saved with `models.save`, as the CLI reads them."""
    folder = tmp_path_factory.mktemp("attack-models")
    paths = {"substitute": folder / "substitute.pt", "target": folder / "target.pt"}
    models.save(substitute, paths["substitute"], arch="cnn2", num_classes=10)
    models.save(target_model, paths["target"], arch="lenet", num_classes=10)
    return paths
