"""PGD: projected gradient descent in an L∞ or L2 ball (Madry et al., 2018), untargeted or targeted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from activethief.attacks.base import Attack
from activethief.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class PGD(Attack):
    """Iterated gradient steps, each clipped to [0, 1] and projected onto the ε-ball (L∞ or L2).

    Without a random start this is the basic iterative method and matches ART's
    `ProjectedGradientDescent(norm=np.inf | 2, num_random_init=0)` step for step.

    Args:
        eps: the ball's radius.
        steps: number of gradient steps (>= 1).
        step_size: length of each step in the norm, in pixels of [0, 1]; None: 0.01 under L∞ (the
            value every earlier result used) and 2.5 * eps / steps under L2 (Madry et al.'s rule).
        random_start: start from a uniform random point of the ε-ball (drawn from the call's seed).
        target_class: None, a class index, or "least-likely".
        batch_size: images per pass.
        norm: "inf" or "2".

    Example:
        >>> adversarial = PGD(eps=0.3, steps=40, step_size=0.01)(model, images, labels, seed=0)
        >>> adversarial = PGD(eps=2.0, norm="2")(model, images, labels, seed=0)
    """

    name: ClassVar[str] = "pgd"

    steps: int = 40
    step_size: float | None = None
    random_start: bool = True

    def validate(self) -> None:
        super().validate()
        if self.steps < 1:
            raise ConfigError(f"steps must be >= 1; got {self.steps}")
        if self.step_size is not None and not self.step_size > 0:
            raise ConfigError(f"step_size must be > 0 (or None for the norm's default); got {self.step_size}")

    @property
    def alpha(self) -> float:
        """The step size actually used."""
        if self.step_size is not None:
            return self.step_size
        return 0.01 if self.ball.name == "inf" else 2.5 * self.eps / self.steps

    def config(self) -> dict[str, Any]:
        return {**super().config(), "step_size": self.alpha}

    def perturb(
        self, model: nn.Module, x: torch.Tensor, goal: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        x_adv = self.ball.random_point(x, self.eps, generator) if self.random_start else x
        for _ in range(self.steps):
            x_adv = self.step(x_adv, x, self.gradient(model, x_adv, goal), self.alpha)
        return x_adv
