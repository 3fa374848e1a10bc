"""Fixtures of the experiment tests: a tiny target, and the tiny grid run once serially."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from experiment_helpers import TINY, GridRun

from activethief import models
from activethief.experiments import SerialExecutor, run_experiments
from activethief.training import FitConfig, accuracy, fit

Mnist = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@pytest.fixture(scope="session")
def target_dir(tmp_path_factory: pytest.TempPathFactory, mnist_small: Mnist) -> Path:
    """`<dir>/mnist-cnn2.pt`: cnn2 trained one epoch on 2,000 MNIST images (about 85% accurate)."""
    x, y, xt, yt = mnist_small
    model = models.build("cnn2", 10, seed=0)
    fit(model, x[1000:3000], y[1000:3000], config=FitConfig(epochs=1, val_fraction=0.0), seed=0)
    folder = tmp_path_factory.mktemp("targets")
    models.save(
        model, folder / "mnist-cnn2.pt", arch="cnn2", num_classes=10, test_accuracy=accuracy(model, xt, yt)
    )
    return folder


@pytest.fixture(scope="session")
def serial_run(tmp_path_factory: pytest.TempPathFactory, target_dir: Path) -> GridRun:
    """The whole tiny grid, serially, one torch thread per cell."""
    out = tmp_path_factory.mktemp("serial")
    report = run_experiments(
        "all", "mnist", out=out, params=TINY, target_dir=target_dir, executor=SerialExecutor(threads=1)
    )
    return GridRun(out, report)
