"""Augmented pools, `aug:VIEWS:SPEC`: the thief's own images transformed before they are queried.

A thief whose pool comes from another distribution than the target's may change its own images first:
crops, rescales, rotations, edge maps, thresholding. The result is another pool of natural-ish images,
larger and more varied than the first, and entirely the attacker's to make (Pal et al., AAAI 2020 steal
with public pools; Orekondy et al., CVPR 2019, Knockoff Nets, show that the pool's diversity matters more
than its closeness to the target's data).

VIEWS is a comma-separated list of views, each a chain of transforms joined by `.` (applied left to
right) and optionally `*K` for K random copies; `seed=S` among them sets the seed (default 0). Image
`i` of the pool is view `i % V` of base image `i // V` (V copies in all), so the first images of the
pool hold every view of the first base images. E.g. `aug:raw,crop*2,shrink.edges:fashion-mnist` is
4 x 60,000 images. Transforms (parameters drawn per image from (seed, index) by a counter-based
generator, so any image is made alone and the same every time):

- `raw`: the image itself; `invert`: 1 - x;
- `crop`: a random square window of 1/3 to 2/3 of the side, scaled up to the whole image;
- `shrink`: scaled down to 0.6-0.8 of the side, shifted a little, on black;
- `rotate`: rotated by up to 45 degrees either way; `spin`: by any angle;
- `edges`: the Sobel gradient magnitude, scaled so each image's largest is 1;
- `threshold`: 1 where the image is above its own mean, else 0.

The pool is lazy: a batch is transformed when it is read, so 4 x 60,000 images cost no more memory than
the base pool.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from activethief.data.lazy import LazyImages
from activethief.data.noise import splitmix64
from activethief.data.pools import Pool, PoolSource, PoolSummary
from activethief.data.registry import Shape
from activethief.errors import DataError

_VERSION = 1
_USAGE = (
    "write aug:VIEWS:SPEC, VIEWS a comma-separated list of transforms chained with '.', each optionally "
    "*COPIES, and optionally seed=S (e.g. aug:raw,crop*2,shrink.edges:fashion-mnist)"
)
Params = Callable[[int], torch.Tensor]  # column j of the image's parameters, uniform in [0, 1)


def _affine(
    x: torch.Tensor, zoom: torch.Tensor, angle: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor
) -> torch.Tensor:
    """Warp each image: output pixel p reads input (R(angle) p / zoom + t), bilinear, black outside."""
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def crop(x: torch.Tensor, u: Params) -> torch.Tensor:
    zoom = 1.5 + 1.5 * u(0)  # the window is 1/zoom of the side
    room = 1 - 1 / zoom  # how far the window's centre may move (normalised coordinates)
    return _affine(x, zoom, torch.zeros(len(x)), (2 * u(1) - 1) * room, (2 * u(2) - 1) * room)


def shrink(x: torch.Tensor, u: Params) -> torch.Tensor:
    zoom = 0.6 + 0.2 * u(0)
    return _affine(x, zoom, torch.zeros(len(x)), (2 * u(1) - 1) * 0.15, (2 * u(2) - 1) * 0.15)


def rotate(x: torch.Tensor, u: Params) -> torch.Tensor:
    zero = torch.zeros(len(x))
    return _affine(x, torch.ones(len(x)), (2 * u(0) - 1) * (math.pi / 4), zero, zero)


def spin(x: torch.Tensor, u: Params) -> torch.Tensor:
    zero = torch.zeros(len(x))
    return _affine(x, torch.ones(len(x)), 2 * math.pi * u(0), zero, zero)


def edges(x: torch.Tensor, u: Params) -> torch.Tensor:
    kernel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    c = x.shape[1]
    kx = kernel.expand(c, 1, 3, 3).contiguous()
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    gx, gy = F.conv2d(padded, kx, groups=c), F.conv2d(padded, kx.transpose(2, 3).contiguous(), groups=c)
    magnitude = (gx**2 + gy**2).sqrt()
    return magnitude / magnitude.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)


def threshold(x: torch.Tensor, u: Params) -> torch.Tensor:
    return (x > x.mean(dim=(1, 2, 3), keepdim=True)).to(x.dtype)


TRANSFORMS: dict[str, Callable[[torch.Tensor, Params], torch.Tensor]] = {
    "raw": lambda x, u: x,
    "invert": lambda x, u: 1 - x,
    "crop": crop,
    "shrink": shrink,
    "rotate": rotate,
    "spin": spin,
    "edges": edges,
    "threshold": threshold,
}


def parse_views(text: str, source: str) -> tuple[list[tuple[str, ...]], int]:
    """VIEWS as one transform chain per copy, and the seed; a DataError naming what is wrong."""
    views: list[tuple[str, ...]] = []
    seed = 0
    for item in text.split(","):
        if item.startswith("seed="):
            seed = _count(item.removeprefix("seed="), source, "seed", minimum=0)
            continue
        chain_text, star, copies_text = item.partition("*")
        copies = _count(copies_text, source, "COPIES", minimum=1) if star else 1
        chain = tuple(chain_text.split("."))
        unknown = [name for name in chain if name not in TRANSFORMS]
        if unknown or not chain_text:
            raise DataError(
                f"bad augmented pool {source!r}: unknown transform {unknown[0] if unknown else ''!r}; "
                f"known: {', '.join(TRANSFORMS)}; {_USAGE}"
            )
        views.extend([chain] * copies)
    if not views:
        raise DataError(f"bad augmented pool {source!r}: no views; {_USAGE}")
    return views, seed


def _count(text: str, source: str, name: str, *, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise DataError(
            f"bad augmented pool {source!r}: {name} must be an integer >= {minimum}, got {text!r}"
        )
    return value


class ViewMaker:
    """Image i: view `i % V` of base image `i // V`, transformed with parameters drawn from (seed, i)."""

    def __init__(self, base: Pool, views: Sequence[tuple[str, ...]], seed: int) -> None:
        self.base, self.views, self.seed = base, list(views), seed
        self.count, self.shape = len(base) * len(views), base.shape
        described = ",".join(".".join(chain) for chain in views)
        digest = hashlib.sha256(f"{base.fingerprint} {described} {seed}".encode()).hexdigest()
        self._identity = f"views/{_VERSION}:{digest}"

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(np.uint8)

    @property
    def identity(self) -> str:
        return self._identity

    @property
    def held_bytes(self) -> int:
        return 0

    def make(self, indices: np.ndarray) -> np.ndarray:
        out = np.empty((len(indices), *self.shape), dtype=np.uint8)
        slots = indices % len(self.views)
        for slot, chain in enumerate(self.views):
            where = np.flatnonzero(slots == slot)
            if where.size:
                images = torch.from_numpy(self.base[indices[where] // len(self.views)])
                for position, name in enumerate(chain):
                    images = TRANSFORMS[name](images, self._uniforms(indices[where], position))
                out[where] = torch.round(images.clamp(0, 1) * 255).to(torch.uint8).numpy()
        return out

    def _uniforms(self, indices: np.ndarray, position: int) -> Params:
        """Parameter column j of each image, uniform in [0, 1), from (seed, index, transform, j)."""
        base = splitmix64(np.array([self.seed, position], dtype=np.uint64))

        def column(j: int) -> torch.Tensor:
            with np.errstate(over="ignore"):
                counters = (indices.astype(np.uint64) * np.uint64(16) + np.uint64(j)) ^ base[0]
                bits = splitmix64(splitmix64(counters) ^ base[1])
            return torch.from_numpy(((bits >> np.uint64(40)).astype(np.float32)) / np.float32(1 << 24))

        return column


@dataclass(frozen=True)
class ViewReader:
    """`aug:VIEWS:SPEC`: the pool SPEC (any `open_pool` source) in several transformed views."""

    split: str = "train"
    root: Path | str | None = None
    cache: bool = True
    kind: str = "augmented"

    def accepts(self, source: PoolSource) -> bool:
        return isinstance(source, str) and source.startswith("aug:")

    def open(self, source: PoolSource, shape: Shape | None) -> Pool:
        from activethief.data.pools import open_pool

        text = str(source)
        views_text, _, spec = text.removeprefix("aug:").partition(":")
        if not views_text or not spec:
            raise DataError(f"bad augmented pool {text!r}: {_USAGE}")
        views, seed = parse_views(views_text, text)
        try:
            base = open_pool(spec, shape, split=self.split, root=self.root, cache=self.cache)
        except DataError as exc:
            raise DataError(f"augmented pool {text!r}, base {spec!r}: {exc}") from None
        maker = ViewMaker(base, views, seed)
        storage = f"uint8, transformed per batch from {base.summary.kind} ({len(views)} views)"
        return Pool(LazyImages(maker), "NCHW", PoolSummary(text, self.kind, storage, maker.count))
