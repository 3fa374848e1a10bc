"""Training and inference throughput (images/s) of each architecture on this machine's CPU cores.

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


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'arch':10s} {'precision':9s} {'train img/s':>12s} {'infer img/s':>12s}")
    for arch in models.ARCHITECTURES:
        for bf16 in (False, True):
            train, infer = measure(arch, bf16)
            print(f"{arch:10s} {'bf16' if bf16 else 'fp32':9s} {train:12,.0f} {infer:12,.0f}")


if __name__ == "__main__":
    main()
