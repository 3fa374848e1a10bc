"""Predict with a trained substitute in bounded memory: logits, probabilities, features, accuracy.

Every batch enters the network through `network_batch`, in channels-last weights (`channels_last`), so
the same values take the same code path in every process (the README's determinism guarantees).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from activethief.errors import ModelError

ArrayLike = np.ndarray | torch.Tensor


class ImageSource(Protocol):
    """Images read a batch at a time: a `data.Pool` (uint8 or memory-mapped storage, float32 batches)."""

    def __len__(self) -> int: ...

    def __getitem__(self, rows: slice | np.ndarray, /) -> np.ndarray: ...


Images = ArrayLike | ImageSource


def channels_last(model: nn.Module) -> None:
    """Store the model's weights channels-last, in place (a no-op when they already are).

    oneDNN's convolutions run faster in that layout on the 2-core CPU: cnn2 trains at ~8,500 images/s vs
    5,000-6,600 and predicts at ~27,000 vs 9,000-11,000. Done outside inference mode, so the weights stay
    ordinary tensors that gradients can flow through (attacks, further training).
    """
    with torch.no_grad():
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # missing from the stubs


def network_batch(x: torch.Tensor) -> torch.Tensor:
    """`x` as a fresh float32 tensor in standard contiguous layout, in memory torch allocated.

    Every batch enters a network this way, so the kernels see one layout and one alignment (torch's
    allocator aligns to 64 bytes) whatever the caller's array was: a numpy slice (16-byte aligned at
    best), a broadcast channel axis (stride 0, which torch reads as channels-last) or a view. The same
    values then take the same code path in every process, which the determinism guarantees rely on.
    """
    return torch.empty(x.shape, dtype=torch.float32).copy_(x)


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`x` on `device`: the same tensor (no copy) on the CPU, a copy on a GPU."""
    return x if device.type == "cpu" else x.to(device, non_blocking=True)


def model_device(model: nn.Module) -> torch.device:
    """Where `model`'s weights are (the CPU for a module without any); its batches go there."""
    from activethief.models import model_device as device_of

    return device_of(model)


def as_float_tensor(x: ArrayLike) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    return tensor.float() if tensor.dtype != torch.float32 else tensor


def output_classes(model: nn.Module) -> int:
    """The model's number of outputs: from one zero image when it declares `input_shape` (every model
    `models.build` makes, a user factory's included, whatever its head), else its last `nn.Linear`."""
    shape = getattr(model, "input_shape", None)
    if shape is not None:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            out = model(to_device(torch.zeros(1, *shape), model_device(model)))
        model.train(was_training)
        return int(out.shape[-1])
    linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linear:
        raise ModelError(
            f"cannot tell how many classes {type(model).__name__} predicts: give it an `input_shape` "
            "attribute (C, H, W) or end it with an nn.Linear"
        )
    return int(linear[-1].out_features)


def predict_logits(
    model: nn.Module, x: ArrayLike, *, batch_size: int = 512, bf16: bool = False
) -> torch.Tensor:
    """Logits [n, C] (float32 tensor), computed in batches so memory stays bounded.

    The weights are switched to channels-last first (see `channels_last`). A traced, inference-optimised
    TorchScript graph was faster still, but leaked ~32 MB per trace and killed a grid after a few hundred
    rounds.
    """
    logits = predict_outputs(model, x, probs=False, logits=True, batch_size=batch_size, bf16=bf16).logits
    assert logits is not None
    return torch.from_numpy(logits)


def predict_proba(model: nn.Module, x: ArrayLike, *, batch_size: int = 512, bf16: bool = False) -> np.ndarray:
    """Softmax probabilities [n, C] as a float32 numpy array, streamed in batches."""
    probs = predict_outputs(model, x, batch_size=batch_size, bf16=bf16).probs
    assert probs is not None
    return probs


@dataclass
class Outputs:
    """What one streaming pass computed over a set of images; None for what was not asked."""

    probs: np.ndarray | None = None
    logits: np.ndarray | None = None
    features: np.ndarray | None = None


def predict_outputs(
    model: nn.Module,
    x: Images,
    *,
    probs: bool = True,
    logits: bool = False,
    features: bool = False,
    batch_size: int = 512,
    bf16: bool = False,
) -> Outputs:
    """Probabilities, logits and/or penultimate features of `x` [n, ...] in one pass of batches.

    `x` is an array, a tensor or anything whose slices are float32 arrays (a `data.Pool`: a uint8 or
    memory-mapped pool is read one batch at a time, never converted whole).

    Each quantity asked for is one preallocated float32 array [n, ...], filled batch by batch, so a
    pool of any size costs one pool-sized array per quantity and nothing else. Features come from
    `models.features_and_logits` (the same layers as `model(x)`, split before the head).
    """
    from activethief.models import features_and_logits

    channels_last(model)
    was_training = model.training
    model.eval()
    xs = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    n = len(xs)
    device = model_device(model)
    out = Outputs()
    wanted = {"probs": probs, "logits": logits, "features": features}
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            block = xs[start : start + batch_size]  # a `data.Pool` converts only this batch to float32
            batch = network_batch(block if isinstance(block, torch.Tensor) else torch.from_numpy(block))
            batch = to_device(batch, device)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                if features:
                    feats, z = features_and_logits(model, batch)
                else:
                    feats, z = None, model(batch)
            z = z.float().cpu()  # .cpu() is the tensor itself on the CPU
            values = {
                "logits": z,
                "features": None if feats is None else feats.float().flatten(1).cpu(),
                "probs": F.softmax(z, dim=1) if probs else None,
            }
            for name, value in values.items():
                if not wanted[name] or value is None:
                    continue
                if getattr(out, name) is None:
                    setattr(out, name, np.empty((n, *value.shape[1:]), dtype=np.float32))
                getattr(out, name)[start : start + len(value)] = value.numpy()
    model.train(was_training)
    for name, asked in wanted.items():
        if asked and getattr(out, name) is None:  # an empty input: empty arrays of the right width
            width = output_classes(model) if name != "features" else 0
            setattr(out, name, np.zeros((0, width), dtype=np.float32))
    return out


def accuracy(model: nn.Module, x: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of `x` whose argmax prediction equals `labels`."""
    probs = predict_proba(model, x)
    return float((probs.argmax(1) == np.asarray(labels)).mean())
