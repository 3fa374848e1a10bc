"""What every cell of a dataset shares: pool, test set, target, and the settings recorded in each row."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from activethief import data, models
from activethief.experiments.grid import GridParams
from activethief.oracle import ModelOracle

TARGET_ARCH = "cnn2"


def target_path(target_dir: Path | str, dataset: str) -> Path:
    """Where the experiments keep a dataset's target: `<dir>/<dataset>-cnn2.pt`."""
    return Path(target_dir) / f"{dataset}-{TARGET_ARCH}.pt"


def ensure_target(
    dataset: str,
    target_dir: Path | str,
    *,
    data_dir: Path | str | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """The dataset's target file, trained with `train_target` (minutes) when it does not exist yet."""
    path = target_path(target_dir, dataset)
    if not path.is_file():
        from activethief.target import train_target

        if log is not None:
            log(f"training the {dataset} target ({TARGET_ARCH}) into {path}; this takes a few minutes")
        train_target(dataset, arch=TARGET_ARCH, out=path, data_dir=data_dir)
    return path


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with `threads` torch and OpenMP/BLAS threads, then restore the previous counts.

    The thread count changes floating-point summation order, so cells are bit-identical across
    executors only when they run with the same count.
    """
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class InputSpec:
    """Where a dataset's inputs come from: small and picklable, so a worker process can load them itself."""

    dataset: str
    target_path: str
    pool_size: int | None = None
    test_size: int | None = None
    data_dir: str | None = None


@dataclass
class Inputs:
    """A dataset's pool and test slices, the target's weights and its labels on the test slice."""

    dataset: str
    pool: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    target_arch: str
    num_classes: int
    target_state: dict[str, torch.Tensor]
    target_labels: np.ndarray
    target_sha256: str
    target_metadata: dict[str, Any]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image the target takes: the pool's."""
        c, h, w = (int(d) for d in self.pool.shape[1:])
        return (c, h, w)

    def target_model(self) -> torch.nn.Module:
        """A fresh copy of the target (the user's own model, in eval mode)."""
        model = models.build(self.target_arch, self.num_classes)
        model.load_state_dict(self.target_state)
        return model.eval()

    def oracle(self, mode: str = "probs") -> ModelOracle:
        """A fresh oracle (in-memory ledger) over the target, answering in output mode `mode`."""
        return ModelOracle(
            self.target_model(), num_classes=self.num_classes, input_shape=self.input_shape, mode=mode
        )

    @property
    def target_accuracy(self) -> float:
        """The target's accuracy on the test slice."""
        return float((self.target_labels == self.test_y).mean())


_CACHE: dict[tuple[InputSpec, int], Inputs] = {}


def load_inputs(spec: InputSpec, threads: int) -> Inputs:
    """Load (once per process) the inputs `spec` names; target labels are computed with `threads` threads."""
    key = (spec, threads)
    if key not in _CACHE:
        x, _ = data.load(spec.dataset, "train", root=spec.data_dir)
        x_test, y_test = data.load(spec.dataset, "test", root=spec.data_dir)
        # Fresh copies with standard strides: `data.load` adds the channel axis with stride 0, which torch
        # reads as channels-last and convolves along another path, so results would differ in the last
        # bits from a pickled copy (a Ray task's) of the same images.
        pool = x[: spec.pool_size].copy()
        x_test, y_test = x_test[: spec.test_size].copy(), y_test[: spec.test_size].copy()
        del x
        model, metadata = models.load(spec.target_path)
        oracle = ModelOracle(model, num_classes=int(metadata["num_classes"]))
        with torch_threads(threads):
            labels = oracle.evaluate(x_test)
        assert labels is not None  # a local model is always evaluated for free
        _CACHE[key] = Inputs(
            dataset=spec.dataset,
            pool=pool,
            test_x=x_test,
            test_y=y_test,
            target_arch=str(metadata["arch"]),
            num_classes=int(metadata["num_classes"]),
            target_state={k: v.clone() for k, v in model.state_dict().items()},
            target_labels=labels,
            target_sha256=weights_sha256(model),
            target_metadata={k: v for k, v in metadata.items() if _jsonable(v)},
        )
    return _CACHE[key]


def settings_for(inputs: Inputs, params: GridParams) -> dict[str, Any]:
    """The settings every row of this dataset carries; rows with other settings are never mixed in."""
    settings: dict[str, Any] = {
        "dataset": inputs.dataset,
        "pool_size": len(inputs.pool),
        "test_size": len(inputs.test_y),
        "substitute": params.substitute,
        "fit": params.fit.to_dict(),
        "base_seed": params.base_seed,
        "target_sha256": inputs.target_sha256[:16],
    }
    canonical = json.dumps(settings, sort_keys=True).encode()
    return {"settings_id": hashlib.sha256(canonical).hexdigest()[:12], **settings}


def weights_sha256(model: torch.nn.Module) -> str:
    """SHA-256 over the model's parameter names, shapes, dtypes and bytes.

    The target's identity in every row: the weights, not the file, whose metadata (training seconds)
    differs between two trainings that give bit-identical weights, so a target retrained on a fresh
    machine still matches the rows computed with the old one.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
