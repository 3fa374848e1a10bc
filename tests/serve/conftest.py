"""Fixtures for the prediction service: a saved target, a keys file, and real uvicorn servers on
127.0.0.1 (free ports), run in threads and stopped at teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from serve_helpers import KEYS_TOML, LiveServer

from activethief import models
from activethief.serve import build_service
from activethief.serve.connections import ConnectionLimits


@pytest.fixture(scope="session")
def target_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained but saved cnn2, its last layer scaled so answers are confident and varied (the
    server tests need answers, not a good model; no dataset needed)."""
    path = tmp_path_factory.mktemp("target") / "target.pt"
    model = models.build("cnn2", 10, seed=0)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(30.0)
    models.save(
        model,
        path,
        arch="cnn2",
        num_classes=10,
        dataset="mnist",
        class_names=[str(i) for i in range(10)],
    )
    return path


@pytest.fixture(scope="session")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "keys.toml"
    path.write_text(KEYS_TOML)
    return path


@pytest.fixture
def start_server(target_file: Path, keys_file: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start servers (fresh in-memory state unless `state=` names a file); all stop at teardown."""
    servers: list[LiveServer] = []

    def start(
        target: Path | None = None, limits: ConnectionLimits | None = None, **options: Any
    ) -> LiveServer:
        server = LiveServer(build_service(target or target_file, keys_file, **options), limits)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def server(target_file: Path, keys_file: Path) -> Iterator[LiveServer]:
    """One server shared by a module's tests that do not exhaust budgets."""
    live = LiveServer(build_service(target_file, keys_file, max_batch=64, max_bytes=4 * 1024 * 1024))
    yield live
    live.stop()


@pytest.fixture(scope="session")
def images() -> np.ndarray:
    """Twenty-five deterministic images in [0, 1] (no dataset needed)."""
    rng = np.random.default_rng(0)
    x = rng.random((25, 1, 28, 28), dtype=np.float32)
    x[x < 0.7] = 0.0
    return x
