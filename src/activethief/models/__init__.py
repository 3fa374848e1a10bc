"""Architectures by name (or `auto` by input shape, or a user's `module:function` factory), and the one
file format every saved model (target or substitute) uses."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from activethief.errors import ModelError
from activethief.files import atomic_path
from activethief.models.architectures import ARCHITECTURES, MIN_SIDE, MNIST_SHAPE, Classifier, InputShape
from activethief.models.device import DEVICES, model_device, resolve_device
from activethief.models.factory import build_from_factory, import_factory, is_factory_name

FORMAT = "activethief-model/1"

# What `auto` picks for any input other than MNIST's 28x28 grayscale (benchmarks/training_speed.py).
RGB_DEFAULT = "resnet8"

__all__ = [
    "ARCHITECTURES",
    "DEVICES",
    "FORMAT",
    "RGB_DEFAULT",
    "Classifier",
    "InputShape",
    "build",
    "check_arch",
    "check_input_shape",
    "features_and_logits",
    "load",
    "model_device",
    "resolve_arch",
    "resolve_device",
    "save",
]


def features_and_logits(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(penultimate features [n, D], logits [n, C]) of `model` on `x`, from one forward pass.

    Every architecture here is a `Classifier`; a user's module qualifies by having the same two methods,
    `features(x)` and `head(features)`.
    """
    features_of = getattr(model, "features", None)
    head = getattr(model, "head", None)
    if not callable(features_of) or not callable(head):
        raise ModelError(
            f"{type(model).__name__} exposes no penultimate features: give it `features(x)` and "
            "`head(features)` methods (see activethief.models.Classifier), or use a strategy on probabilities"
        )
    features = features_of(x)
    return features, head(features)


def check_input_shape(input_shape: Sequence[int]) -> InputShape:
    """`input_shape` as a (C, H, W) tuple of positive ints (a list from a JSON file is fine).

    Raises:
        ModelError: not three positive integers.
    """
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise ModelError(
            f"input_shape must be (channels, height, width), three positive integers; got {shape!r}"
        )
    return (shape[0], shape[1], shape[2])


def resolve_arch(arch: str, input_shape: Sequence[int]) -> str:
    """The architecture `arch` stands for at `input_shape`: `auto` is `cnn2` for MNIST's (1, 28, 28) and
    the residual net `RGB_DEFAULT` for anything else; every other name is returned as it is."""
    if arch != "auto":
        return arch
    return "cnn2" if check_input_shape(input_shape) == MNIST_SHAPE else RGB_DEFAULT


def check_arch(arch: str) -> None:
    """Raise ModelError unless `arch` is `auto`, a built-in name, or an importable callable `module:function`
    (imported, not called: building needs the input shape)."""
    if not isinstance(arch, str):
        raise ModelError(f"architecture must be a name, got {arch!r}")
    if arch == "auto" or arch in ARCHITECTURES:
        return
    if is_factory_name(arch):
        import_factory(arch)
        return
    raise ModelError(
        f"unknown architecture {arch!r}; known: auto, {', '.join(sorted(ARCHITECTURES))}, or a factory "
        "package.module:function"
    )


def build(
    arch: str,
    num_classes: int = 10,
    *,
    input_shape: Sequence[int] = MNIST_SHAPE,
    seed: int | None = None,
    device: str | torch.device | None = None,
) -> nn.Module:
    """A freshly initialised model for images of `input_shape` (C, H, W).

    Args:
        arch: a built-in name (`ARCHITECTURES`), `auto` (`resolve_arch`), or `package.module:function`,
            a callable `(input_shape, num_classes) -> nn.Module` (checked on one zero batch).
        seed: makes the initial weights reproducible without touching global random state; the same
            seed gives the same weights on any device (they are drawn on the CPU, then moved).
        device: where the model goes (`resolve_device` names, or a torch.device); the CPU when omitted.

    Built-in architectures are `Classifier`s; a factory's module is returned as it made it, with an
    `input_shape` attribute added when it has none (so `save` records the shape).
    """
    shape = check_input_shape(input_shape)
    arch = resolve_arch(arch, shape)
    if not is_factory_name(arch):
        check_arch(arch)  # an unknown name raises, listing what is known
        if min(shape[1:]) < MIN_SIDE:
            raise ModelError(f"{arch} needs images of at least {MIN_SIDE}x{MIN_SIDE} pixels, got {shape}")

    def factory() -> nn.Module:
        if is_factory_name(arch):
            return build_from_factory(arch, num_classes, shape)
        return ARCHITECTURES[arch](num_classes, shape)

    if seed is None:
        model = factory()
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = factory()
    if not hasattr(model, "input_shape"):
        setattr(model, "input_shape", shape)  # noqa: B010  # nn.Module's typed __setattr__ takes tensors
    if device is not None:
        model.to(resolve_device(device) if isinstance(device, str) else device)
    return model


def _saved_shape(model: nn.Module, input_shape: Sequence[int] | None) -> list[int]:
    if input_shape is None:
        # Modules built here carry it; a plain module that does not say is an MNIST-shaped one (every
        # file written before shapes were recorded was).
        input_shape = getattr(model, "input_shape", MNIST_SHAPE)
    return list(check_input_shape(input_shape))


def save(
    model: nn.Module,
    path: Path | str,
    *,
    arch: str,
    num_classes: int,
    input_shape: Sequence[int] | None = None,
    **metadata: Any,
) -> None:
    """Write weights and metadata atomically (temp file, then rename).

    `arch` is what `load` rebuilds the model with: a built-in name or the `module:function` factory that
    made it (store the resolved name, not `auto`, so a later change of what `auto` picks cannot break
    the file). `input_shape` defaults to the model's own `input_shape` (every model `build` makes has one).
    """
    payload = {
        "format": FORMAT,
        "arch": arch,
        "num_classes": num_classes,
        "input_shape": _saved_shape(model, input_shape),
        # Plain JSON types only, so the file loads with torch.load(weights_only=True).
        "metadata": json.loads(json.dumps(metadata, default=str)),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load(path: Path | str) -> tuple[nn.Module, dict[str, Any]]:
    """`(model, metadata)` from a file written by `save`; the model is in eval mode on the CPU.

    Metadata includes `arch`, `num_classes` and `input_shape` besides whatever the writer stored.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise ModelError(f"{path} is not a readable model file: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"{path} is not an activethief model file (expected format {FORMAT})")
    arch, shape = payload["arch"], payload["input_shape"]
    try:
        model = build(arch, payload["num_classes"], input_shape=shape)
    except ModelError as exc:
        if isinstance(arch, str) and is_factory_name(arch):
            raise ModelError(
                f"{path} was saved with factory {arch}; make it importable (PYTHONPATH) to load this "
                f"file ({exc})"
            ) from None
        raise ModelError(f"{path}: {exc}") from None
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise ModelError(f"{path}: weights do not fit architecture {payload['arch']}: {exc}") from exc
    model.eval()
    metadata = dict(payload.get("metadata", {}))
    metadata.update(arch=arch, num_classes=payload["num_classes"], input_shape=list(shape))
    return model, metadata
