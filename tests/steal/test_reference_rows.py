"""The loop against rows recorded before it became a package (`reference_rows.json`).

Recorded by the single-module loop of December 2026 (after the purchase-order fix) on an AMD EPYC with
torch 2.13.0 (CPU) and 2 threads, where the package's loop reproduces them bit for bit. On another CPU
the kernels round differently (README, Determinism), so this test checks what holds on any machine:
the round structure exactly and the random strategy's purchases exactly (they read only the seeded
generator). Accuracy, agreement and batch entropy are not compared: these substitutes train for a few
dozen steps on a few hundred answers, where last-bit differences grow into points of accuracy (an
Intel CI machine measured 16.3% where the AMD recording has 8.0%), so no tolerance would both hold on
every CPU and catch a regression; only their presence is checked.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from activethief import models
from activethief.oracle import ModelOracle
from activethief.steal import StealConfig, steal
from activethief.training import FitConfig, fit

REFERENCE = json.loads((Path(__file__).parent / "reference_rows.json").read_text())
FIT = FitConfig(epochs=1, patience=1, batch_size=100, warmup_steps=2)
EXACT = ("round", "train_size", "queries_used", "selected", "train_epochs", "evaluation_queries")


@pytest.fixture(scope="module")
def recorded_target(mnist_small: tuple[np.ndarray, ...]) -> torch.nn.Module:
    x, y = mnist_small[0], mnist_small[1]
    target = models.build("cnn2", 10, seed=0)
    fit(target, x[1000:3000], y[1000:3000], config=FitConfig(epochs=1, val_fraction=0.0), seed=0)
    return target


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_the_loop_reproduces_the_recorded_rows(
    name: str, recorded_target: torch.nn.Module, mnist_small: tuple[np.ndarray, ...]
) -> None:
    x, _, xt, yt = mnist_small
    settings = dict(REFERENCE[name]["settings"])
    oracle = ModelOracle(recorded_target, mode=settings.pop("mode"))
    result = steal(oracle, x[:600], StealConfig(fit=FIT, **settings), test=(xt[:300], yt[:300]), quiet=True)
    recorded = REFERENCE[name]["history"]
    assert len(result.history) == len(recorded)
    for row, want in zip((asdict(r) for r in result.history), recorded, strict=True):
        assert {k: row[k] for k in EXACT} == {k: want[k] for k in EXACT}
        for key in ("accuracy", "agreement", "batch_entropy"):
            assert (row[key] is None) == (want[key] is None), (key, row["round"])
    if name == "random":
        keys, _, rounds = oracle.ledger.all_answers()
        bought = {str(r): sorted(int(k) for k in keys[rounds == r]) for r in sorted(set(rounds.tolist()))}
        assert bought == REFERENCE[name]["purchases"]
