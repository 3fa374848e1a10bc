"""Transfer-oriented attack variants: input diversity (DI) and translation invariance (TI), on MI-FGSM.

An adversarial example that fools the substitute only at one exact pixel alignment overfits it. Xie et
al. (CVPR 2019, "Improving transferability of adversarial examples with input diversity") compute each
step's gradient on a randomly resized-and-padded copy of the image (with probability p), which keeps the
perturbation effective under small changes of scale and position; combined with momentum (Dong et al.,
CVPR 2018) this is DI-MI-FGSM (their M-DI2-FGSM). Dong et al. (CVPR 2019, "Evading defenses to
transferable adversarial examples by translation-invariant attacks") smooth each step's gradient with a
Gaussian kernel, the gradient of the loss averaged over small translations (TI).

The random transformation is drawn from the attack call's `torch.Generator`: the same seed gives the same
images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from activethief.attacks.base import cross_entropy_of
from activethief.attacks.mifgsm import MIFGSM
from activethief.errors import ConfigError


def diverse_inputs(
    x: torch.Tensor, generator: torch.Generator, *, prob: float = 0.5, resize_rate: float = 0.85
) -> torch.Tensor:
    """A random resize-and-pad of each image of `x` [b, C, H, W], applied with probability `prob`.

    Each chosen image is shrunk by a factor drawn uniformly from [resize_rate, 1] and placed at a
    uniformly random position of the H x W frame, the rest zero-padded (Xie et al.'s transform, with the
    output kept at the input's size so any substitute takes it); the others pass unchanged. Bilinear, so
    the gradient flows back to `x`. Draws from `generator` (CPU), whatever `x`'s device.
    """
    b = len(x)
    assert x.ndim == 4, x.shape
    draws = torch.rand((b, 4), generator=generator, dtype=torch.float32).to(x.device)
    apply = draws[:, 0] < prob
    scale = torch.where(apply, resize_rate + (1 - resize_rate) * draws[:, 1], torch.ones_like(draws[:, 1]))
    # The shrunk image spans [t - s, t + s] in normalised coordinates; |t| <= 1 - s keeps it in the frame.
    shift = (1 - scale).unsqueeze(1) * (2 * draws[:, 2:] - 1)
    theta = torch.zeros((b, 2, 3), dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
    theta[:, :, 2] = -shift / scale.unsqueeze(1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    assert out.shape == x.shape, (out.shape, x.shape)
    return torch.where(apply.view(b, 1, 1, 1), out, x)


class InputDiversity(nn.Module):
    """`model` behind `diverse_inputs`: every call sees freshly transformed copies of its input.

    The attack objective (`attack_cross_entropy`) averages the loss over `samples` transformed copies,
    so a step follows the expected gradient over transformations rather than one draw.
    """

    def __init__(
        self, model: nn.Module, generator: torch.Generator, *, prob: float, resize_rate: float, samples: int
    ) -> None:
        super().__init__()
        self.model, self.generator = model, generator
        self.prob, self.resize_rate, self.samples = prob, resize_rate, samples

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return diverse_inputs(x, self.generator, prob=self.prob, resize_rate=self.resize_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.model(self.transform(x)) for _ in range(self.samples)]).mean(0)

    def attack_cross_entropy(self, x: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        losses = [cross_entropy_of(self.model, self.transform(x), goal) for _ in range(self.samples)]
        return torch.stack(losses).mean()


def gaussian_kernel(size: int, sigma: float) -> torch.Tensor:
    """A normalised 2-D Gaussian kernel [size, size] (TI's smoothing kernel)."""
    offsets = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    line = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = torch.outer(line, line)
    return kernel / kernel.sum()


def smooth_gradient(grad: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """`grad` [b, C, H, W] convolved per channel with `gaussian_kernel(size, sigma)` (same size out)."""
    channels = grad.shape[1]
    kernel = gaussian_kernel(size, sigma).to(grad).expand(channels, 1, size, size)
    return F.conv2d(grad, kernel, padding=size // 2, groups=channels)


@dataclass(frozen=True, kw_only=True)
class DIMIFGSM(MIFGSM):
    """MI-FGSM whose every gradient is taken on randomly resized-and-padded copies (DI; Xie et al., 2019),
    optionally smoothed by a Gaussian kernel (TI; Dong et al., 2019). Distance: L∞.

    Args:
        eps, steps, step_size, decay, target_class, batch_size: as for `MIFGSM`.
        diversity_prob: probability that a step's copy of an image is transformed (0 gives MI-FGSM).
        resize_rate: the smallest shrink factor of the transform, in (0, 1].
        samples: transformed copies per step whose losses are averaged (1 is the paper's method).
        kernel_size: TI's Gaussian kernel side (odd; 0 = no smoothing).
        kernel_sigma: its standard deviation in pixels; None means `kernel_size / sqrt(12)`.

    Example:
        >>> adversarial = DIMIFGSM(eps=0.3, steps=20)(ensemble, images, labels, seed=0)
    """

    name: ClassVar[str] = "di-mi-fgsm"

    diversity_prob: float = 0.5
    resize_rate: float = 0.85
    samples: int = 1
    kernel_size: int = 0
    kernel_sigma: float | None = None

    def validate(self) -> None:
        super().validate()
        if not 0 <= self.diversity_prob <= 1:
            raise ConfigError(f"diversity_prob must lie in [0, 1]; got {self.diversity_prob}")
        if not 0 < self.resize_rate <= 1:
            raise ConfigError(f"resize_rate must lie in (0, 1] (the smallest shrink); got {self.resize_rate}")
        if self.samples < 1:
            raise ConfigError(f"samples must be >= 1; got {self.samples}")
        if self.kernel_size < 0 or (self.kernel_size and self.kernel_size % 2 == 0):
            raise ConfigError(
                f"kernel_size must be 0 (off) or an odd number of pixels; got {self.kernel_size}"
            )
        if self.kernel_sigma is not None and not self.kernel_sigma > 0:
            raise ConfigError(f"kernel_sigma must be > 0 (or None); got {self.kernel_sigma}")

    def perturb(
        self, model: nn.Module, x: torch.Tensor, goal: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        diverse = InputDiversity(
            model, generator, prob=self.diversity_prob, resize_rate=self.resize_rate, samples=self.samples
        )
        return super().perturb(diverse, x, goal, generator)

    def gradient(self, model: nn.Module, x: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        grad = super().gradient(model, x, goal)
        if not self.kernel_size or grad.ndim != 4:
            return grad
        sigma = self.kernel_sigma or self.kernel_size / math.sqrt(12)
        return smooth_gradient(grad, self.kernel_size, sigma)


@dataclass(frozen=True, kw_only=True)
class TIDIMIFGSM(DIMIFGSM):
    """DI-MI-FGSM with TI's gradient smoothing on by default (a 5-pixel kernel). Distance: L∞."""

    name: ClassVar[str] = "ti-di-mi-fgsm"

    kernel_size: int = 5
