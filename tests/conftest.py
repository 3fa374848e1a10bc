"""Shared fixtures: small slices of the real datasets (fetched once into the user cache) and tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from activethief import data

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def mnist_small() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """3,000 training and 1,000 test images of the real MNIST (fetched on first use)."""
    data.fetch("mnist")
    x, y = data.load("mnist", "train")
    xt, yt = data.load("mnist", "test")
    return x[:3000].copy(), y[:3000].copy(), xt[:1000].copy(), yt[:1000].copy()
