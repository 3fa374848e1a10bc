"""Semi-supervised training over the pool the thief already holds: answers cost money, pixels do not.

Each optimiser step of `fit` adds, to the loss on answered images, a loss on `ratio` times as many pool
images drawn at random (answered or not): the substitute's own prediction on a weak view of each image,
where it is at least `threshold` confident, becomes a hard target.

- `fixmatch` (Sohn et al., NeurIPS 2020): the target is for a strong view of the same image (affine warp,
  colour, Cutout), so the substitute learns to be consistent under perturbations the answers never show.
- `pseudo` (Lee, ICML workshops 2013): the target is for the weak view itself (pseudo-labelling).

Jagielski et al. (USENIX Security 2020) used MixMatch, the same family, for high-fidelity extraction with
few queries.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from activethief.errors import ConfigError
from activethief.training.augment import strong_augment, weak_augment
from activethief.training.predict import Images, as_float_tensor, model_device, network_batch, to_device

SEMI_METHODS = ("fixmatch", "pseudo")


@dataclass(frozen=True)
class SemiConfig:
    """The unlabelled objective of `fit` (see the module docstring).

    Args:
        method: `fixmatch` or `pseudo`.
        threshold: the least confidence (max probability) for a prediction to become a target.
        ratio: pool images per answered image in a step (FixMatch's mu); the step costs about
            1 + 1.5 * ratio answered-only steps.
        weight: the unlabelled loss's weight (FixMatch's lambda_u).
    """

    method: str = "fixmatch"
    threshold: float = 0.95
    ratio: int = 3
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.method not in SEMI_METHODS:
            raise ConfigError(
                f"unknown semi-supervised method {self.method!r}; known: {', '.join(SEMI_METHODS)}"
            )
        if not 0 <= self.threshold <= 1 or self.weight < 0:
            raise ConfigError(f"semi-supervised threshold must lie in [0, 1], weight be >= 0 (got {self})")
        if isinstance(self.ratio, bool) or not isinstance(self.ratio, int) or self.ratio < 1:
            raise ConfigError(f"semi-supervised ratio must be a positive integer, got {self.ratio!r}")


def unlabelled_loss(
    model: nn.Module,
    pool: Images,
    count: int,
    config: SemiConfig,
    generator: torch.Generator,
    *,
    max_shift: int,
    hflip: bool,
) -> tuple[torch.Tensor, float]:
    """The unlabelled loss of one step on `count` random pool images, and the fraction that had a target.

    The weak view's prediction is computed without gradients (a fixed target), in the model's current
    mode, as in FixMatch.
    """
    rows = torch.randint(0, len(pool), (count,), generator=generator)
    images = network_batch(as_float_tensor(pool[rows.numpy()]))
    device = model_device(model)  # views are drawn on the CPU (the generator's), then moved
    weak = weak_augment(images, max_shift, generator, hflip=hflip)
    with torch.no_grad():
        confidence, target = F.softmax(model(to_device(weak, device)).float(), dim=1).max(1)
    mask = (confidence >= config.threshold).float()
    view = strong_augment(images, generator, hflip=hflip) if config.method == "fixmatch" else weak
    losses = F.cross_entropy(model(to_device(view, device)).float(), target, reduction="none")
    return (losses * mask).mean(), float(mask.mean())


def parse_semi(name: str) -> SemiConfig | None:
    """`off` (None), or `METHOD[:THRESHOLD]` (`fixmatch`, `pseudo:0.9`): the CLI's `--semi` values."""
    method, _, threshold = name.strip().lower().partition(":")
    if method == "off" and not threshold:
        return None
    try:
        value = float(threshold) if threshold else SemiConfig.threshold
    except ValueError:
        value = -1.0
    if method not in SEMI_METHODS or not 0 <= value <= 1:
        raise ConfigError(
            f"unknown semi-supervised setting {name!r}; use off, {' or '.join(SEMI_METHODS)}, "
            "optionally with :THRESHOLD in [0, 1] (e.g. fixmatch:0.9)"
        )
    return SemiConfig(method=method, threshold=value)
