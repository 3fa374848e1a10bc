"""Training and inference throughput (images/s) of each architecture on this machine's CPU cores, and
cnn2's prediction throughput per batch size (the loop scores the whole pool every round).

The active-learning loop retrains the substitute every round, so cnn2 must train at >= 5,000 images/s
on 2 cores. The `--rgb` table times the residual-net sizes considered for RGB substitutes at 3x32x32
(batches of 100, as the low-budget preset trains) beside cnn2 at 1x28x28, with the time a 1,500-step
round takes: the default (`models.RGB_DEFAULT`) is the largest that keeps such a round within ~2-3
minutes on 2 cores. `--device cuda` times the same on a GPU.

Run: .venv/bin/python benchmarks/training_speed.py [--rgb] [--steps N] [--device cpu|cuda|auto]
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import numpy as np
import torch

from activethief import models
from activethief.models.architectures import Architecture, cnn2, residual_net
from activethief.training import FitConfig, fit, predict_proba

# Residual sizes considered for the RGB substitute: (blocks per stage, width); resnet8 is (1, 16) and
# resnet14-wide (2, 32).
RGB_CANDIDATES: dict[str, tuple[Architecture, tuple[int, int, int]]] = {
    "cnn2": (cnn2, (1, 28, 28)),
    "resnet8 (1x16)": (partial(residual_net, 1, 16), (3, 32, 32)),
    "resnet8-24 (1x24)": (partial(residual_net, 1, 24), (3, 32, 32)),
    "resnet8-32 (1x32)": (partial(residual_net, 1, 32), (3, 32, 32)),
    "resnet14 (2x16)": (partial(residual_net, 2, 16), (3, 32, 32)),
    "resnet14-wide (2x32)": (partial(residual_net, 2, 32), (3, 32, 32)),
}


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


def measure_rgb(
    architecture: Architecture, shape: tuple[int, int, int], steps: int, device: torch.device
) -> tuple[float, float]:
    """(training, scoring) images/s: `steps` steps of batch 100 after 5 warm-up ones; scoring 5,120 images."""
    rng = np.random.default_rng(0)
    n = 100 * steps
    x = rng.random((n, *shape), dtype=np.float32)
    y = rng.integers(0, 10, n)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = architecture(10, shape).to(device)
    config = partial(FitConfig, epochs=1, val_fraction=0, batch_size=100)
    fit(model, x[:500], y[:500], config=config(max_steps=5))  # warm-up
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    start = time.perf_counter()
    fit(model, x, y, config=config(max_steps=steps))
    sync()
    train = n / (time.perf_counter() - start)
    scored = x[: min(n, 5120)]
    predict_proba(model, scored[:512])
    start = time.perf_counter()
    predict_proba(model, scored)
    sync()
    return train, len(scored) / (time.perf_counter() - start)


def rgb_table(steps: int, device: torch.device) -> None:
    print(f"\nRGB substitute sizes on {device}: batch 100, {steps} timed steps each")
    columns = ("weights", "train img/s", "score img/s", "1,500 steps")
    print(f"{'arch':22s} {'input':9s} " + " ".join(f"{c:>12s}" for c in columns))
    for name, (architecture, shape) in RGB_CANDIDATES.items():
        weights = sum(p.numel() for p in architecture(10, shape).parameters())
        train, score = measure_rgb(architecture, shape, steps, device)
        round_s = 1500 * 100 / train
        print(
            f"{name:22s} {'x'.join(map(str, shape)):9s} {weights:12,d} {train:12,.0f} {score:12,.0f} "
            f"{round_s:10.0f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rgb", action="store_true", help="only the RGB substitute-size table")
    parser.add_argument("--steps", type=int, default=40, help="timed training steps per RGB size")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (the RGB table only)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.rgb:
        rgb_table(args.steps, models.resolve_device(args.device))
        return
    print(f"{'arch':10s} {'precision':9s} {'train img/s':>12s} {'infer img/s':>12s}")
    for arch in models.ARCHITECTURES:
        for bf16 in (False, True):
            train, infer = measure(arch, bf16)
            print(f"{arch:10s} {'bf16' if bf16 else 'fp32':9s} {train:12,.0f} {infer:12,.0f}")
    predict_batches()
    rgb_table(args.steps, models.resolve_device(args.device))


if __name__ == "__main__":
    main()
