"""MI-FGSM: iterative signed steps along an accumulated gradient momentum (Dong et al., 2018)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from activethief.attacks.base import Attack
from activethief.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class MIFGSM(Attack):
    """Momentum iterative FGSM: `g <- decay * g + grad / ||grad||_1`, step `alpha * sign(g)`. Distance: L∞.

    The momentum stabilises the update direction, which is reported to transfer better from a
    substitute to an unseen target than plain PGD. Matches ART's `MomentumIterativeMethod`.

    Args:
        eps: L∞ radius.
        steps: number of iterations (>= 1).
        step_size: size of each signed step; None means `eps / steps` (the paper's choice).
        decay: momentum decay factor mu (>= 0; 0 gives the basic iterative method).
        target_class: None, a class index, or "least-likely".
        batch_size: images per pass.

    Example:
        >>> adversarial = MIFGSM(eps=0.3, steps=10, decay=1.0)(model, images, labels)
    """

    name: ClassVar[str] = "mi-fgsm"

    steps: int = 10
    step_size: float | None = None
    decay: float = 1.0

    def validate(self) -> None:
        super().validate()
        if self.steps < 1:
            raise ConfigError(f"steps must be >= 1; got {self.steps}")
        if self.step_size is not None and not self.step_size > 0:
            raise ConfigError(f"step_size must be > 0 (or None for eps / steps); got {self.step_size}")
        if not self.decay >= 0:
            raise ConfigError(f"decay must be >= 0; got {self.decay}")

    @property
    def alpha(self) -> float:
        """The step size actually used."""
        return self.eps / self.steps if self.step_size is None else self.step_size

    def perturb(
        self, model: nn.Module, x: torch.Tensor, goal: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        momentum = torch.zeros_like(x)
        x_adv = x
        for _ in range(self.steps):
            grad = self.gradient(model, x_adv, goal)
            flat = grad.reshape(len(grad), -1)
            l1 = torch.linalg.vector_norm(flat, ord=1, dim=1, keepdim=True)
            scale = torch.where(l1 == 0, torch.zeros_like(l1), 1 / l1)  # a zero gradient adds nothing
            momentum = self.decay * momentum + (flat * scale).reshape(grad.shape)
            x_adv = self.step(x_adv, x, momentum, self.alpha)
        return x_adv
