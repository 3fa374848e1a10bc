"""What the model-file adapters (TorchScript, ONNX) share: batched inference with clear errors, and the
answer as probabilities, so each adapter only says how to run one batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from activethief.errors import ConfigError, ModelError, OracleError
from activethief.oracle.base import Shape
from activethief.oracle.local import Returns, to_probabilities
from activethief.oracle.modes import OutputMode


class FileBackend:
    """A backend over a model file: `_run` maps one float32 batch [n, C, H, W] to raw outputs [n, K].

    Subclasses set `path`, `input_shape`, `batch_size`, and after their probe `num_classes` and `returns`.
    """

    remote_mode: OutputMode | None = None
    path: Path
    input_shape: Shape
    batch_size: int
    num_classes: int
    returns: Returns

    def _run(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _describe_input(self) -> str:
        """What the error for a batch the model rejects says about its input (the shape, by default)."""
        return f"input shape {self.input_shape}"

    def _outputs(self, images: np.ndarray, *, probing: bool = False) -> np.ndarray:
        """Raw outputs [n, K] float32, `batch_size` images at a time (memory stays bounded)."""
        rows: list[np.ndarray] = []
        for start in range(0, len(images), self.batch_size):
            batch = np.asarray(images[start : start + self.batch_size], dtype=np.float32)
            try:
                out = np.asarray(self._run(batch))
            except ModelError:
                raise
            except Exception as exc:  # a shape the model rejects surfaces as its runtime's own error
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                what = "a probe batch" if probing else "a batch"
                raise ConfigError(
                    f"{self.path} failed on {what} of shape {list(batch.shape)} ({self._describe_input()}): "
                    f"{first}. Check input_shape (--input-shape C,H,W)"
                ) from None
            if out.ndim != 2 or out.shape[0] != len(batch) or out.shape[1] < 2:
                raise ModelError(
                    f"{self.path}: the model's output has shape {list(out.shape)} for {len(batch)} images; "
                    "a classifier must output [n, classes] with at least 2 classes"
                )
            rows.append(out.astype(np.float32, copy=False))
        if not rows:
            return np.zeros((0, getattr(self, "num_classes", 0)), np.float32)
        return np.concatenate(rows)

    def answer(self, images: np.ndarray, request_id: str) -> np.ndarray:
        """Probabilities [n, K] for float32 images [n, C, H, W] in [0, 1]."""
        x = np.asarray(images, dtype=np.float32)
        if x.shape[1:] != self.input_shape:
            raise OracleError(
                f"{self.path} takes images of shape [n, {', '.join(map(str, self.input_shape))}]; "
                f"got {list(x.shape)}"
            )
        return to_probabilities(self._outputs(x), self.returns, self.num_classes)
