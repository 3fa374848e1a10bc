"""The threat balls an attack may stay in: L∞ (every pixel moves at most ε) and L2 (the perturbation's
Euclidean length is at most ε).

A ball knows its step (L∞: the gradient's sign, the fast gradient sign method of Goodfellow et al., 2015;
L2: the gradient scaled to unit length, the fast gradient method of Madry et al., 2018), its projection
and its random start. Gradient attacks (`attacks.base.Attack`) and the hybrid attack's restarts
(`attacks.guided`) take the ball by name, so each attack runs in either norm without a branch of its
own. Images are [b, ...] tensors in [0, 1]; every norm is taken per image over all of its pixels.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

import numpy as np
import torch

from activethief.errors import ConfigError


class Ball(Protocol):
    """An ε-ball around each clean image."""

    name: ClassVar[str]

    def step(self, direction: torch.Tensor, size: float) -> torch.Tensor:
        """The move of length `size` (in this norm) along `direction` [b, ...]; zero where it is zero."""

    def project(self, x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
        """`x_adv` clipped to [0, 1], then pulled into the ε-ball around `x` (ART's order); in [0, 1]."""

    def random_point(self, x: torch.Tensor, eps: float, generator: torch.Generator) -> torch.Tensor:
        """A random point of the ε-ball around `x` (drawn from `generator` on the CPU), clipped to [0, 1]."""

    def distance(self, delta: np.ndarray) -> np.ndarray:
        """float64 [n]: the norm of each perturbation in `delta` [n, ...]."""


def _per_image_norm(t: torch.Tensor, ord: float) -> torch.Tensor:
    """The norm of each image of `t` [b, ...], shaped [b, 1, ...] to broadcast against it."""
    flat = torch.linalg.vector_norm(t.reshape(len(t), -1), ord=ord, dim=1)
    out: torch.Tensor = flat.reshape(len(t), *([1] * (t.ndim - 1)))
    return out


class LInf:
    """The L∞ ball: signed steps, clipping per pixel, a uniform random start in the box."""

    name: ClassVar[str] = "inf"

    def step(self, direction: torch.Tensor, size: float) -> torch.Tensor:
        return size * direction.sign()

    def project(self, x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
        x_adv = x_adv.clamp(0.0, 1.0)
        return (x + (x_adv - x).clamp(-eps, eps)).clamp(0.0, 1.0)

    def random_point(self, x: torch.Tensor, eps: float, generator: torch.Generator) -> torch.Tensor:
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        return (x + (2 * noise - 1) * eps).clamp(0.0, 1.0)

    def distance(self, delta: np.ndarray) -> np.ndarray:
        out: np.ndarray = np.abs(delta.reshape(len(delta), -1)).max(1, initial=0.0).astype(np.float64)
        return out


class L2:
    """The L2 ball: unit-length gradient steps, radial projection, a start drawn uniformly from the ball."""

    name: ClassVar[str] = "2"

    def step(self, direction: torch.Tensor, size: float) -> torch.Tensor:
        length = _per_image_norm(direction, 2.0)
        scale = torch.where(length > 0, size / length.clamp_min(1e-30), torch.zeros_like(length))
        return direction * scale

    def project(self, x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
        delta = x_adv.clamp(0.0, 1.0) - x
        length = _per_image_norm(delta, 2.0)
        shrink = torch.where(length > eps, eps / length.clamp_min(1e-30), torch.ones_like(length))
        # x and x + delta lie in [0, 1], so every point between them does: the clamp only absorbs rounding.
        return (x + delta * shrink).clamp(0.0, 1.0)

    def random_point(self, x: torch.Tensor, eps: float, generator: torch.Generator) -> torch.Tensor:
        direction = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        radius = torch.rand((len(x),), generator=generator, dtype=x.dtype) ** (1.0 / x[0].numel())
        point = self.step(direction, 1.0) * (eps * radius).reshape(len(x), *([1] * (x.ndim - 1)))
        return self.project(x + point.to(x.device), x, eps)

    def distance(self, delta: np.ndarray) -> np.ndarray:
        out: np.ndarray = np.linalg.norm(delta.reshape(len(delta), -1).astype(np.float64), axis=1)
        return out


BALLS: dict[str, Ball] = {"inf": LInf(), "2": L2()}


def ball(norm: str) -> Ball:
    """The ball named `norm`: "inf" (also "linf") or "2" (also "l2")."""
    key = str(norm).strip().lower().removeprefix("l")
    key = "inf" if key in ("inf", "∞") else key
    try:
        return BALLS[key]
    except KeyError:
        raise ConfigError(f"norm must be 'inf' (L∞) or '2' (L2); got {norm!r}") from None


def recorded(config: dict[str, object]) -> dict[str, object]:
    """`config` with its "norm" entry dropped when it is L∞, so results written before attacks had a
    norm keep their settings; an L2 attack's config names its norm."""
    return {k: v for k, v in config.items() if not (k == "norm" and v == "inf")}
