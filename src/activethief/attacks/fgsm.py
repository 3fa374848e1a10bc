"""FGSM: the fast gradient sign method, one L∞ step of size ε (Goodfellow et al., 2015)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from activethief.attacks.base import Attack


@dataclass(frozen=True, kw_only=True)
class FGSM(Attack):
    """Fast gradient sign method: `x + eps * sign(grad_x loss)`, clipped to [0, 1]. Distance: L∞.

    Every pixel with a non-zero gradient moves by exactly `eps` (or stops at 0 or 1).

    Args:
        eps: L∞ radius (step size of the single step).
        target_class: None, a class index, or "least-likely" (then the step descends the loss of that class).
        batch_size: images per pass.

    Example:
        >>> adversarial = FGSM(eps=0.3)(model, images, labels)  # images [n, 1, 28, 28] in [0, 1]
    """

    name: ClassVar[str] = "fgsm"

    def perturb(
        self, model: nn.Module, x: torch.Tensor, goal: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        return self.step(x, x, self.gradient(model, x, goal), self.eps)
