"""Substitute-guided restarts for label-only targets: each query a fresh example crafted on the substitute.

A label-only target says only whether a candidate fooled it, so there is no score to climb. What the
substitute offers for free is more candidates: every query here sends a new PGD example crafted on the
substitute from a random start in the ε-ball, its first steps along a random combination of the
substitute's logits (output-diversified sampling, ODS: Tashiro et al., NeurIPS 2020) so that restarts
land in different parts of the substitute's adversarial region, the rest along the margin loss of the
goal. The target's one-hot answers are enough to stop at the first success.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from activethief.attacks.base import _device
from activethief.attacks.norms import ball
from activethief.attacks.prior import margin_gradient
from activethief.errors import ConfigError


class GuidedSearch:
    """Per-image state of substitute-guided restarts in an L∞ or L2 ball (`query.Search`); uses labels only.

    Args:
        images: clean float32 [n, C, H, W] in [0, 1].
        goal: int64 [n] goal classes; targeted: reach them (True) or leave them.
        eps: the ball's radius.
        substitute: the model (or ensemble) the candidates are crafted on.
        generator: the torch generator of random starts and ODS directions.
        steps: PGD steps per candidate, the first `ods_steps` of them along ODS directions.
        ods_steps: diversifying steps per candidate (0: plain random restarts).
        step_size: length of each step, as a fraction of eps.
        batch_size: images per substitute pass.
        norm: "inf" (signed steps, a uniform start in the box) or "2" (unit-gradient steps, a start
            drawn from the L2 ball); `attacks.norms`.
    """

    def __init__(
        self,
        images: np.ndarray,
        goal: np.ndarray,
        *,
        targeted: bool,
        eps: float,
        substitute: nn.Module,
        generator: torch.Generator,
        steps: int = 10,
        ods_steps: int = 2,
        step_size: float = 0.25,
        batch_size: int = 512,
        norm: str = "inf",
    ) -> None:
        if steps < 1 or not 0 <= ods_steps <= steps:
            raise ConfigError(f"need steps >= 1 and 0 <= ods_steps <= steps; got {steps}, {ods_steps}")
        if not step_size > 0:
            raise ConfigError(f"step_size must be > 0 (a fraction of eps); got {step_size}")
        self.x = torch.from_numpy(np.ascontiguousarray(images))
        self.goal = torch.from_numpy(goal)
        self.targeted = targeted
        self.eps = eps
        self.substitute = substitute
        self.generator = generator
        self.steps = steps
        self.ods_steps = ods_steps
        self.alpha = step_size * eps
        self.batch_size = batch_size
        self.ball = ball(norm)

    def propose(self, indices: np.ndarray) -> np.ndarray:
        out = np.empty((len(indices), *self.x.shape[1:]), np.float32)
        was_training = self.substitute.training
        self.substitute.eval()
        try:
            with torch.enable_grad():
                for start in range(0, len(indices), self.batch_size):
                    rows = torch.from_numpy(indices[start : start + self.batch_size])
                    out[start : start + len(rows)] = self._craft(self.x[rows], self.goal[rows]).numpy()
        finally:
            self.substitute.train(was_training)
        return out

    def _craft(self, x: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        device = _device(self.substitute)
        x_adv = self.ball.random_point(x, self.eps, self.generator).to(device)
        x, goal = x.to(device), goal.to(device)
        classes = int(self.substitute(x[:1]).shape[1])
        weights = (2 * torch.rand((len(x), classes), generator=self.generator) - 1).to(device)
        for step in range(self.steps):
            w = weights if step < self.ods_steps else None
            grad = margin_gradient(self.substitute, x_adv, goal, targeted=self.targeted, weights=w)
            x_adv = self.ball.project(x_adv - self.ball.step(grad, self.alpha), x, self.eps)
        return x_adv.detach().cpu()

    def observe(self, indices: np.ndarray, candidates: np.ndarray, answers: np.ndarray) -> None:
        """Nothing to learn from a label that says no: every restart is independent."""
