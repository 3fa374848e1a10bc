"""Helpers for the input-shape tests: a tiny RGB classifier of any input size, and a service over it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from activethief.serve.app import build_service
from activethief.serve.service import InferenceService

RGB = (3, 16, 16)
RGB_CLASSES = 5


def tiny_rgb_model(num_classes: int = RGB_CLASSES, channels: int = 3, seed: int = 0) -> nn.Module:
    """A conv net for [n, channels, H, W] (any H, W: global pooling to 4x4), its last layer scaled so
    answers are confident and varied; untrained, the tests need answers, not a good model."""
    generator = torch.Generator().manual_seed(seed)
    last = nn.Linear(8 * 4 * 4, num_classes)
    model = nn.Sequential(
        nn.Conv2d(channels, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(), last
    )
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
        last.weight.mul_(20.0)
    return model.eval()


def rgb_service(
    keys_file: Path,
    model: nn.Module | None = None,
    input_shape: Any = RGB,
    **options: Any,
) -> InferenceService:
    """A service over `model` (default: the tiny RGB net) declaring `input_shape` in its metadata."""
    metadata = {"num_classes": RGB_CLASSES, "input_shape": list(input_shape), "dataset": "rgb"}
    return build_service(model or tiny_rgb_model(), keys_file, metadata=metadata, **options)


def rgb_images(count: int, shape: tuple[int, int, int] = RGB, seed: int = 0) -> np.ndarray:
    """Deterministic float32 images [count, *shape] in [0, 1]."""
    return np.random.default_rng(seed).random((count, *shape), dtype=np.float32)
