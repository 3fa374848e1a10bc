"""Where models run: `auto` (a CUDA GPU when one is present, else the CPU), `cpu`, `cuda` or `cuda:N`."""

from __future__ import annotations

import torch
from torch import nn

from activethief.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """The torch device `name` stands for.

    Raises:
        ConfigError: an unknown name, or `cuda` asked for on a machine without a usable CUDA GPU.
    """
    if not isinstance(name, str):
        raise ConfigError(f"device must be one of {', '.join(DEVICES)} (or cuda:N), got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    kind, _, index = name.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise ConfigError(f"unknown device {name!r}; use one of {', '.join(DEVICES)} (or cuda:N)")
    if not torch.cuda.is_available():
        raise ConfigError(
            f"device {name!r} asked for, but torch sees no CUDA GPU here (torch.cuda.is_available() is "
            "False: no GPU, no driver, or a CPU-only torch build); use --device cpu or auto"
        )
    if index and int(index) >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(name)


def model_device(model: nn.Module) -> torch.device:
    """The device of `model`'s first parameter (buffer, if it has none); the CPU for a stateless module."""
    for parameter in model.parameters():
        return parameter.device
    for buffer in model.buffers():
        return buffer.device
    return torch.device("cpu")
