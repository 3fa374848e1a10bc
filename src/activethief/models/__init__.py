"""Architectures by name, and the one file format every saved model (target or substitute) uses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from activethief.errors import ModelError
from activethief.files import atomic_path
from activethief.models.architectures import ARCHITECTURES, Classifier

FORMAT = "activethief-model/1"

__all__ = ["ARCHITECTURES", "FORMAT", "Classifier", "build", "features_and_logits", "load", "save"]


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


def build(arch: str, num_classes: int = 10, *, seed: int | None = None) -> Classifier:
    """A freshly initialised model; `seed` makes the initial weights reproducible without global state."""
    try:
        factory = ARCHITECTURES[arch]
    except KeyError:
        raise ModelError(
            f"unknown architecture {arch!r}; known: {', '.join(sorted(ARCHITECTURES))}"
        ) from None
    if seed is None:
        return factory(num_classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory(num_classes)


def save(model: nn.Module, path: Path | str, *, arch: str, num_classes: int, **metadata: Any) -> None:
    """Write weights and metadata atomically (temp file, then rename)."""
    payload = {
        "format": FORMAT,
        "arch": arch,
        "num_classes": num_classes,
        "input_shape": [1, 28, 28],
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
    model = build(payload["arch"], payload["num_classes"])
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise ModelError(f"{path}: weights do not fit architecture {payload['arch']}: {exc}") from exc
    model.eval()
    metadata = dict(payload.get("metadata", {}))
    metadata.update(
        arch=payload["arch"], num_classes=payload["num_classes"], input_shape=payload["input_shape"]
    )
    return model, metadata
