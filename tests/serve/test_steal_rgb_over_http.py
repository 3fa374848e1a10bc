"""Stealing an RGB 3x16x16 target over HTTP: the shape comes from the server's metadata, the purchases
match the same steal in-process, the server bills exactly the budget, and a resumed run pays nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from serve_helpers import KEYS, LiveServer
from shape_helpers import RGB, RGB_CLASSES, rgb_images, rgb_service

from activethief import ModelOracle, steal
from activethief.errors import OracleError
from activethief.oracle import Ledger
from activethief.oracle.http import HttpOracle
from activethief.training import FitConfig, predict_proba

RUN: dict[str, Any] = {
    "budget": 120,
    "batch_size": 40,
    "seed": 0,
    "quiet": True,
    "fit": FitConfig(epochs=1, patience=1),
}


def test_the_oracle_checks_images_against_the_published_shape(keys_file: Path) -> None:
    server = LiveServer(rgb_service(keys_file, max_batch=8))
    try:
        oracle = HttpOracle(server.model_url, api_key=KEYS["alice"])
        assert oracle.input_shape == RGB
        x = rgb_images(20)
        answers = oracle.query(x, keys=np.arange(20))
        np.testing.assert_allclose(answers, predict_proba(server.service.model, x), atol=1e-6)
        assert oracle.used == server.used("alice") == 20
        for bad in (rgb_images(2, (1, 28, 28)), rgb_images(2, (3, 16, 17)), rgb_images(2)[:, 0]):
            with pytest.raises(OracleError, match=r"\[n, 3, 16, 16\]"):
                oracle.query(bad)
        assert oracle.used == server.used("alice") == 20  # refused before anything was sent
        oracle.close()
    finally:
        server.stop()


def test_steal_an_rgb_target_over_http_as_in_process(keys_file: Path, tmp_path: Path) -> None:
    pool = rgb_images(240, seed=5)
    server = LiveServer(rgb_service(keys_file, max_batch=32))
    try:
        remote = HttpOracle(server.model_url, api_key=KEYS["thief"])
        assert remote.input_shape == RGB and remote.num_classes == RGB_CLASSES
        over_http = steal(remote, pool, out=tmp_path / "http", substitute="auto", **RUN)
        local_oracle = ModelOracle(server.service.model, num_classes=RGB_CLASSES, input_shape=RGB)
        local = steal(local_oracle, pool, out=tmp_path / "local", substitute="auto", **RUN)
        assert over_http.queries_used == local.queries_used == server.used("thief") == 120
        assert [r.selected for r in over_http.history] == [r.selected for r in local.history]
        keys_http, answers_http = remote.answered()
        keys_local, answers_local = Ledger(tmp_path / "local" / "ledger.sqlite").all_answers()[:2]
        assert keys_http.tolist() == sorted(keys_local.tolist())  # the same points were bought
        np.testing.assert_allclose(answers_http, answers_local.reshape(-1, RGB_CLASSES), atol=1e-5)
        with torch.no_grad():
            logits = over_http.substitute(torch.from_numpy(pool[:4]))
        assert logits.shape == (4, RGB_CLASSES)  # a substitute built for 3x16x16
        remote.close()

        again = HttpOracle(server.model_url, api_key=KEYS["thief"])
        resumed = steal(again, pool, out=tmp_path / "http", resume=True, substitute="auto", **RUN)
        assert resumed.queries_used == 120 and server.used("thief") == 120  # nothing bought twice
        again.close()
    finally:
        server.stop()
