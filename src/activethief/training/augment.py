"""Augmentations for training on answered and unanswered images, [n, C, H, W] in [0, 1].

`random_shift` is the weak augmentation of every fit (integer translations, zero-filled, as digits and
centred photos are mostly background at the border). `strong_augment` is FixMatch's strong view (Sohn et
al., NeurIPS 2020): a random affine warp, brightness and contrast changes, and Cutout (DeVries & Taylor,
2017), with horizontal flips only when asked (never for digits). All randomness comes from the given
`torch.Generator`, so the same seed gives the same views.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by its own random integer offset in [-max_shift, max_shift], zero-filled."""
    n, c, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
    batch = torch.arange(n)[:, None, None, None]
    channels = torch.arange(c)[None, :, None, None]
    return padded[batch, channels, rows, cols]


def random_hflip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror a random half of the images left to right (photographs of objects; not for digits)."""
    flip = torch.rand(len(x), generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def random_affine(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    degrees: float = 15.0,
    scale: tuple[float, float] = (0.85, 1.15),
    shear: float = 0.2,
    translate: float = 0.15,
) -> torch.Tensor:
    """A random rotation, scaling, shear and translation per image (bilinear, zero outside)."""
    n = len(x)
    angle = _uniform(n, -degrees, degrees, generator) * (math.pi / 180)
    zoom = _uniform(n, *scale, generator)
    sh = _uniform(n, -shear, shear, generator)
    tx, ty = (_uniform(n, -2 * translate, 2 * translate, generator) for _ in range(2))
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin + sh * cos, tx], 1), torch.stack([sin, cos + sh * sin, ty], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_colour(x: torch.Tensor, generator: torch.Generator, *, strength: float = 0.4) -> torch.Tensor:
    """Random brightness and contrast per image, clipped to [0, 1]."""
    n = len(x)
    brightness = _uniform(n, 1 - strength, 1 + strength, generator)[:, None, None, None]
    contrast = _uniform(n, 1 - strength, 1 + strength, generator)[:, None, None, None]
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * contrast + mean * brightness).clamp(0, 1)


def cutout(x: torch.Tensor, generator: torch.Generator, *, fraction: float = 0.5) -> torch.Tensor:
    """Zero one random square per image, its side up to `fraction` of the image's (DeVries & Taylor)."""
    n, _, h, w = x.shape
    side = (torch.rand(n, generator=generator) * fraction * min(h, w)).long().clamp_min(1)
    cy = torch.randint(0, h, (n,), generator=generator)
    cx = torch.randint(0, w, (n,), generator=generator)
    rows, cols = torch.arange(h)[None, :], torch.arange(w)[None, :]
    inside_rows = ((rows - cy[:, None]).abs() * 2 < side[:, None])[:, :, None]
    inside_cols = ((cols - cx[:, None]).abs() * 2 < side[:, None])[:, None, :]
    keep = ~(inside_rows & inside_cols)
    return x * keep[:, None].to(x.dtype)


def weak_augment(x: torch.Tensor, max_shift: int, generator: torch.Generator, *, hflip: bool) -> torch.Tensor:
    """The weak view: a random shift (when `max_shift` > 0) and, for photographs, a random flip."""
    if max_shift:
        x = random_shift(x, max_shift, generator)
    return random_hflip(x, generator) if hflip else x


def strong_augment(x: torch.Tensor, generator: torch.Generator, *, hflip: bool) -> torch.Tensor:
    """FixMatch's strong view: affine warp, brightness and contrast, Cutout (and a flip when asked)."""
    x = random_colour(random_affine(x, generator), generator)
    x = cutout(x, generator)
    return random_hflip(x, generator) if hflip else x
