"""Square Attack's random search under L∞ (Andriushchenko et al., ECCV 2020), optionally with the substitute
as a free prior that picks which proposal the target sees.

Each step changes one random square window of the perturbation to ±ε (one sign per channel) and keeps
the change when the target's margin loss drops. With a substitute, `proposals` windows are drawn per
step and only the one the substitute finds best (lowest margin loss: no target query) is sent; with one
proposal and no substitute this is the plain Square Attack. Started from a transfer example it refines
what the substitute found; started from the clean image its first query is Square's vertical stripes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from activethief.attacks.base import _device
from activethief.attacks.prior import margin_gradient, substitute_margin
from activethief.attacks.query import margin
from activethief.errors import ConfigError

# Square Attack's schedule: the window's share p of the image halves at these iteration counts.
_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def square_fraction(p_init: float, step: np.ndarray) -> np.ndarray:
    """The share of pixels the window covers at each image's step (Square Attack's schedule, unscaled)."""
    halvings = np.searchsorted(np.asarray(_HALVINGS), step, side="left")
    out: np.ndarray = p_init / 2.0**halvings
    return out


class SquareSearch:
    """Per-image state of an L∞ Square search (`query.Search`).

    Args:
        images: clean float32 [n, C, H, W] in [0, 1].
        goal: int64 [n] goal classes; targeted: reach them (True) or leave them.
        eps: L∞ radius.
        rng: the search's random generator.
        start: float32 [n, C, H, W] starting points (e.g. transfer examples) or None for Square's stripes.
        substitute: the prior that ranks proposals (None: no prior).
        proposals: windows drawn per step when there is a substitute (>= 1).
        p_init: the window's initial share of the image (Square's p; 0.8 for MNIST in the paper).
        gradient_signs: set the window to the corner of the ε-ball the substitute's gradient points to
            at the current point (pixel by pixel), falling back to a random sign where that changes nothing.
    """

    def __init__(
        self,
        images: np.ndarray,
        goal: np.ndarray,
        *,
        targeted: bool,
        eps: float,
        rng: np.random.Generator,
        start: np.ndarray | None = None,
        substitute: nn.Module | None = None,
        proposals: int = 16,
        p_init: float = 0.3,
        gradient_signs: bool = False,
    ) -> None:
        if proposals < 1:
            raise ConfigError(f"proposals must be >= 1; got {proposals}")
        if not 0 < p_init <= 1:
            raise ConfigError(f"p_init must be in (0, 1]; got {p_init}")
        self.x = images
        self.goal = goal
        self.targeted = targeted
        self.eps = eps
        self.rng = rng
        self.substitute = substitute
        self.proposals = proposals if substitute is not None else 1
        self.gradient_signs = gradient_signs and substitute is not None
        self.p_init = p_init
        self.current = self._stripes() if start is None else np.array(start, np.float32, copy=True)
        self.loss = np.full(len(images), np.inf)
        self.steps = np.zeros(len(images), dtype=np.int64)

    def _stripes(self) -> np.ndarray:
        n, c, _, w = self.x.shape
        signs = self.rng.choice(np.array([-1.0, 1.0], np.float32), size=(n, c, 1, w))
        out: np.ndarray = np.clip(self.x + self.eps * signs, 0.0, 1.0).astype(np.float32)
        return out

    def propose(self, indices: np.ndarray) -> np.ndarray:
        fresh = np.isinf(self.loss[indices])  # never answered: send the starting point itself
        k, per = len(indices), self.proposals
        x = np.repeat(self.x[indices], per, axis=0)
        delta = np.repeat(self.current[indices], per, axis=0) - x
        m, c, h, w = delta.shape
        side = np.sqrt(square_fraction(self.p_init, np.repeat(self.steps[indices], per)) * h * w)
        size = np.clip(np.round(side), 1, min(h, w)).astype(np.int64)
        top = self.rng.integers(0, h - size + 1)
        left = self.rng.integers(0, w - size + 1)
        rows, cols = np.arange(h), np.arange(w)
        window = ((rows >= top[:, None]) & (rows < (top + size)[:, None]))[:, :, None] & (
            (cols >= left[:, None]) & (cols < (left + size)[:, None])
        )[:, None, :]
        signs = self.rng.choice(np.array([-1.0, 1.0], np.float32), size=(m, c))
        new = np.where(window[:, None], (self.eps * signs)[:, :, None, None], delta)
        same = np.all((new == delta) | ~window[:, None], axis=(2, 3))  # window already had that sign
        signs = np.where(same, -signs, signs)
        new = np.where(window[:, None], (self.eps * signs)[:, :, None, None], delta)
        if self.gradient_signs:
            assert self.substitute is not None
            toward = self._descent_signs(indices)  # [k, C, H, W]: the substitute's preferred corner
            guided = np.where(window[:, None], self.eps * np.repeat(toward, per, axis=0), delta)
            moved = np.any((guided != delta) & window[:, None], axis=(1, 2, 3))
            new = np.where(moved[:, None, None, None], guided, new)
        candidates = np.clip(x + new, 0.0, 1.0).astype(np.float32)
        if per > 1:
            assert self.substitute is not None
            goal = np.repeat(self.goal[indices], per)
            scores = substitute_margin(self.substitute, candidates, goal, targeted=self.targeted)
            pick = scores.reshape(k, per).argmin(1)
            candidates = candidates.reshape(k, per, c, h, w)[np.arange(k), pick]
        candidates[fresh] = self.current[indices[fresh]]
        out: np.ndarray = candidates
        return out

    def _descent_signs(self, indices: np.ndarray) -> np.ndarray:
        assert self.substitute is not None
        device = _device(self.substitute)
        x = torch.from_numpy(self.current[indices]).to(device)
        goal = torch.from_numpy(self.goal[indices]).to(device)
        was_training = self.substitute.training
        self.substitute.eval()
        try:
            with torch.enable_grad():
                grad = margin_gradient(self.substitute, x, goal, targeted=self.targeted)
        finally:
            self.substitute.train(was_training)
        signs: np.ndarray = (-grad.sign()).cpu().numpy().astype(np.float32)
        return signs

    def observe(self, indices: np.ndarray, candidates: np.ndarray, answers: np.ndarray) -> None:
        loss = margin(answers, self.goal[indices], targeted=self.targeted)
        better = loss < self.loss[indices]
        self.current[indices[better]] = candidates[better]
        self.loss[indices[better]] = loss[better]
        self.steps[indices] += 1
