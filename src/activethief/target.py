"""Train a target model on a dataset's full training set: the black box users then try to steal."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from activethief import data, models
from activethief.training import FitConfig, accuracy, fit


def train_target(
    dataset: str,
    *,
    arch: str = "cnn2",
    out: Path | str = "target.pt",
    epochs: int = 15,
    seed: int = 0,
    data_dir: Path | str | None = None,
    limit: int | None = None,
    log: Callable[[str], None] | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Train `arch` on `dataset`'s training set (10% held out for early stopping), save it, return metadata.

    The model is built for the dataset's image shape (`auto` picks the architecture by it, and the
    resolved name is saved). `limit` trains on the first `limit` training images only (quick trials and
    smoke tests); `device` is `auto` (a GPU when present), `cpu` or `cuda`.
    """
    spec = data.get_spec(dataset)
    x, y = data.load(dataset, "train", root=data_dir)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    x_test, y_test = data.load(dataset, "test", root=data_dir)
    arch = models.resolve_arch(arch, spec.shape)
    model = models.build(
        arch, len(spec.classes), input_shape=spec.shape, seed=seed, device=models.resolve_device(device)
    )
    started = time.perf_counter()

    def report(epoch: int, train_loss: float, val_loss: float | None) -> None:
        if log is not None:
            log(
                f"epoch {epoch:3d}  train loss {train_loss:.4f}  val loss {val_loss:.4f}"
                f"  ({time.perf_counter() - started:.0f} s)"
            )

    result = fit(
        model, x, y, config=FitConfig(epochs=epochs, patience=3, augment=1), seed=seed, on_epoch=report
    )
    info: dict[str, Any] = {
        "dataset": spec.name,
        "class_names": list(spec.classes),
        "test_accuracy": accuracy(model, x_test, y_test),
        "seed": seed,
        "train_images": len(x),
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "train_seconds": round(time.perf_counter() - started, 1),
        "torch": str(torch.__version__),
    }
    models.save(model, out, arch=arch, num_classes=len(spec.classes), **info)
    info.update(arch=arch, path=str(out))
    return info


def cached_target(dataset: str, arch: str, folder: Path | str) -> Path:
    """`folder/<dataset>-<arch>.pt`, trained with `train_target` first if the file is missing (the
    benchmarks' targets: each is trained once per machine, then reused)."""
    path = Path(folder) / f"{dataset}-{arch}.pt"
    if not path.exists():
        print(f"training the {dataset} target ({arch}) into {path} (minutes) ...", flush=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        train_target(dataset, arch=arch, out=path)
    return path
