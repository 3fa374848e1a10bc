"""TorchScript targets: a user's `torch.jit.save` file, loaded with `torch.jit.load` and asked in batches.

The input shape (C, H, W) comes from `input_shape=`, or from the file: an extra file `input_shape.json`
holding `[C, H, W]` (written by `torch.jit.save(module, path, _extra_files={"input_shape.json":
"[3, 32, 32]"})`), or else an `input_shape` attribute of the scripted module. At open time one probe
batch of two synthetic images is run to check that shape and to read the number of classes from the
output width; whether the target outputs logits or probabilities is checked on the same batch.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from activethief.errors import ConfigError, ModelError
from activethief.models import resolve_device
from activethief.oracle.base import Oracle, Shape, check_input_shape
from activethief.oracle.files import FileBackend
from activethief.oracle.ledger import Ledger
from activethief.oracle.local import Returns
from activethief.oracle.modes import OutputMode
from activethief.oracle.open import check_normalise, decide_returns, probe_images

SHAPE_FILE = "input_shape.json"


def _recorded_shape(module: torch.jit.ScriptModule, extra: dict[str, Any], path: Path) -> Shape | None:
    """The input shape the file records (extra file first, then a module attribute), if any."""
    text = extra.get(SHAPE_FILE) or ""
    if text:
        try:
            value = json.loads(text.decode() if isinstance(text, bytes) else text)
        except (ValueError, UnicodeDecodeError):
            raise ModelError(f"{path}: its {SHAPE_FILE} is not JSON [C, H, W]: {text!r}") from None
        return check_input_shape(value, f"{path}: {SHAPE_FILE}")
    if hasattr(module, "input_shape"):
        return check_input_shape(module.input_shape, f"{path}: the module's input_shape attribute")
    return None


class TorchScriptBackend(FileBackend):
    """A TorchScript classifier evaluated in this process, in batches, on the CPU (or `device`).

    Args:
        path: a file written by `torch.jit.save`.
        input_shape: (C, H, W); needed unless the file records it (see the module docstring), and
            checked against it when both are given.
        returns: `logits` (softmax is applied here, once) or `probs`; None reads it from the probe
            batch (probabilities when every output row is a distribution).
        normalise: per-channel `(mean, std)` applied to [0, 1] images before the model sees them.
        owned: a file the user holds is a model they own (default, as for activethief model files):
            evaluation answers are free. `owned=False` counts those too, as for a paid API.
        device: `cpu` (default), `cuda[:N]` or `auto`.
        batch_size: images per forward pass (bounds memory).
    """

    def __init__(
        self,
        path: Path | str,
        *,
        input_shape: Sequence[int] | None = None,
        returns: str | None = None,
        normalise: tuple[Sequence[float], Sequence[float]] | str | None = None,
        owned: bool = True,
        device: str | torch.device = "cpu",
        batch_size: int = 256,
    ) -> None:
        self.path = Path(path)
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.owned = owned
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        if not self.path.is_file():
            raise ModelError(f"TorchScript file {self.path} does not exist")
        extra: dict[str, Any] = {SHAPE_FILE: ""}
        try:
            with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; users still ship it
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(  # type: ignore[no-untyped-call]
                    str(self.path), map_location=self.device, _extra_files=extra
                )
        except Exception as exc:  # torch raises RuntimeError, ValueError, ... for a bad file
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(
                f"{self.path} is not a TorchScript file (torch.jit.load failed: {first}); write one with "
                "torch.jit.save(torch.jit.script(model), path)"
            ) from None
        self.module = module.eval()
        recorded = _recorded_shape(module, extra, self.path)
        if input_shape is None and recorded is None:
            raise ConfigError(
                f"{self.path} does not record its input shape; pass input_shape=(C, H, W) "
                f"(--input-shape C,H,W), or save it with _extra_files={{'{SHAPE_FILE}': '[C, H, W]'}}"
            )
        given = None if input_shape is None else check_input_shape(input_shape)
        if given is not None and recorded is not None and given != recorded:
            raise ConfigError(
                f"{self.path} records input shape {recorded}; input_shape={given} contradicts it"
            )
        shape = given or recorded
        assert shape is not None
        self.input_shape: Shape = shape
        self.normaliser = check_normalise(normalise, shape[0])
        probe_batch = probe_images(shape)
        # A model the user does not own is billed for the probe (`Oracle` counts `probe_queries`).
        self.probe_queries = 0 if self.owned else len(probe_batch)
        probe = self._outputs(probe_batch, probing=True)
        self.num_classes = int(probe.shape[1])
        self.returns: Returns = decide_returns(returns, probe, str(self.path))

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        out = self.module(batch)
        if not isinstance(out, torch.Tensor):
            raise ModelError(
                f"{self.path}: the model returned {type(out).__name__}; a classifier must return one "
                "tensor of logits or probabilities [n, classes]"
            )
        return out

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if self.normaliser is not None:
            batch = self.normaliser(batch)
        with torch.inference_mode():
            out = self._forward(torch.from_numpy(np.ascontiguousarray(batch)).to(self.device))
        return out.float().cpu().numpy()


class TorchScriptOracle(Oracle):
    """An oracle over a TorchScript file (see `TorchScriptBackend` for the target options)."""

    def __init__(
        self,
        path: Path | str,
        *,
        input_shape: Sequence[int] | None = None,
        returns: str | None = None,
        normalise: tuple[Sequence[float], Sequence[float]] | str | None = None,
        owned: bool = True,
        device: str | torch.device = "cpu",
        batch_size: int = 256,
        mode: str | OutputMode = "probs",
        budget: int | None = None,
        ledger: Ledger | Path | str | None = None,
    ) -> None:
        backend = TorchScriptBackend(
            path,
            input_shape=input_shape,
            returns=returns,
            normalise=normalise,
            owned=owned,
            device=device,
            batch_size=batch_size,
        )
        super().__init__(backend, mode=mode, budget=budget, ledger=ledger)
