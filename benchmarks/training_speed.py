"""Training and inference throughput (images/s) of each architecture on this machine's CPU cores, and
cnn2's prediction throughput per batch size (the loop scores the whole pool every round).

The active-learning loop retrains the substitute every round, so cnn2 must train at >= 5,000 images/s
on 2 cores. Run: .venv/bin/python benchmarks/training_speed.py
"""

from __future__ import annotations

import time

import numpy as np
import torch

from activethief import models
from activethief.training import FitConfig, fit, predict_proba


def measure(arch: str, bf16: bool, n: int = 12_800) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    x = rng.random((n, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, n)
    model = models.build(arch, seed=0)
    fit(model, x[:1280], y[:1280], config=FitConfig(epochs=1, val_fraction=0, bf16=bf16))  # warm-up
    start = time.perf_counter()
    fit(model, x, y, config=FitConfig(epochs=1, val_fraction=0, bf16=bf16))
    train = n / (time.perf_counter() - start)
    start = time.perf_counter()
    predict_proba(model, x, bf16=bf16)
    infer = n / (time.perf_counter() - start)
    return train, infer


def predict_batches(sizes: tuple[int, ...] = (128, 256, 512, 1024, 2048), n: int = 60_000) -> None:
    """Scoring a 60k pool with cnn2 at several batch sizes, each the best of three, as ratios of 512's."""
    x = np.random.default_rng(0).random((n, 1, 28, 28), dtype=np.float32)
    model = models.build("cnn2", seed=0)
    predict_proba(model, x[:2048])  # warm-up (and the switch to channels-last)
    rates = {}
    for size in sizes:
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            predict_proba(model, x, batch_size=size)
            best = min(best, time.perf_counter() - start)
        rates[size] = n / best
    print(f"\ncnn2 scoring {n:,} images: batch size, images/s, ratio to 512")
    for size, rate in rates.items():
        print(f"{size:6d} {rate:12,.0f} {rate / rates[512]:6.2f}")


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'arch':10s} {'precision':9s} {'train img/s':>12s} {'infer img/s':>12s}")
    for arch in models.ARCHITECTURES:
        for bf16 in (False, True):
            train, infer = measure(arch, bf16)
            print(f"{arch:10s} {'bf16' if bf16 else 'fp32':9s} {train:12,.0f} {infer:12,.0f}")
    predict_batches()


if __name__ == "__main__":
    main()
