"""PGD: projected gradient descent under an L∞ bound (Madry et al., 2018), untargeted or targeted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from activethief.attacks.base import Attack
from activethief.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class PGD(Attack):
    """Iterated signed gradient steps, each clipped to [0, 1] and projected onto the ε-ball. Distance: L∞.

    Without a random start this is the basic iterative method and matches ART's
    `ProjectedGradientDescent(norm=np.inf, num_random_init=0)` step for step.

    Args:
        eps: L∞ radius.
        steps: number of gradient steps (>= 1).
        step_size: size of each signed step, in pixels of [0, 1].
        random_start: start from a uniform random point of the ε-ball (drawn from the call's seed).
        target_class: None, a class index, or "least-likely".
        batch_size: images per pass.

    Example:
        >>> adversarial = PGD(eps=0.3, steps=40, step_size=0.01)(model, images, labels, seed=0)
    """

    name: ClassVar[str] = "pgd"

    steps: int = 40
    step_size: float = 0.01
    random_start: bool = True

    def validate(self) -> None:
        super().validate()
        if self.steps < 1:
            raise ConfigError(f"steps must be >= 1; got {self.steps}")
        if not self.step_size > 0:
            raise ConfigError(f"step_size must be > 0; got {self.step_size}")

    def perturb(
        self, model: nn.Module, x: torch.Tensor, goal: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        x_adv = x
        if self.random_start:
            noise = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            x_adv = (x + (2 * noise - 1) * self.eps).clamp(0.0, 1.0)
        for _ in range(self.steps):
            x_adv = self.step(x_adv, x, self.gradient(model, x_adv, goal), self.step_size)
        return x_adv
