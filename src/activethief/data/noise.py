"""Noise pools, `noise:uniform:N[:SEED]` and `noise:gaussian:N[:SEED]`: the floor of data-free stealing.

ActiveThief (Pal et al., AAAI 2020) measures its natural-data pools against a pool of uniform noise
(4.70x better agreement at 30,000 queries). Each image is a pure function of (seed, index, pixel): a
counter-based generator (SplitMix64 of the pixel's global position, keyed by the seed) makes any image
without making the ones before it, so a 1,000,000-image noise pool holds no memory, any order of access
gives the same images, and the pool's identity is its spec. Pixels are stored as uint8 (0-255):

- `uniform`: each pixel uniform over 0..255;
- `gaussian`: each pixel N(0.5, 0.25^2) (Box-Muller), clipped to [0, 1], then quantised.

The image shape is the target's (`open_pool(..., shape=...)`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from activethief.data.lazy import LazyImages
from activethief.data.pools import Pool, PoolSource, PoolSummary
from activethief.data.registry import Shape
from activethief.errors import DataError

NOISE_KINDS = ("uniform", "gaussian")
GAUSSIAN_MEAN, GAUSSIAN_STD = 0.5, 0.25
_VERSION = 1  # bump when the generator changes: the identity (and so resumed runs) must change with it
_BLOCK_VALUES = 1 << 22  # pixels generated at once (32 MB of uint64 temporaries)
_GOLDEN, _MIX1, _MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's output function (Steele et al., OOPSLA 2014) on uint64 counters: well-mixed bits."""
    z = x + np.uint64(_GOLDEN)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX2)
    return z ^ (z >> np.uint64(31))


@dataclass(frozen=True)
class NoiseMaker:
    """`count` noise images of `shape`, image i a function of (kind, seed, i) alone."""

    kind: str
    count: int
    shape: Shape
    seed: int = 0

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(np.uint8)

    @property
    def identity(self) -> str:
        return f"noise/{_VERSION}:{self.kind}:{self.count}:{self.seed}"

    @property
    def held_bytes(self) -> int:
        return 0

    def make(self, indices: np.ndarray) -> np.ndarray:
        pixels = int(np.prod(self.shape))
        out = np.empty((len(indices), pixels), dtype=np.uint8)
        key = splitmix64(np.array([self.seed, NOISE_KINDS.index(self.kind)], dtype=np.uint64))
        step = max(1, _BLOCK_VALUES // pixels)
        offsets = np.arange(pixels, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for start in range(0, len(indices), step):
                rows = indices[start : start + step].astype(np.uint64)
                counters = (rows[:, None] * np.uint64(pixels) + offsets) ^ key[0]
                bits = splitmix64(counters)
                out[start : start + step] = self._pixels(bits, key[1])
        return out.reshape(len(indices), *self.shape)

    def _pixels(self, bits: np.ndarray, key: np.uint64) -> np.ndarray:
        if self.kind == "uniform":
            return (bits >> np.uint64(56)).astype(np.uint8)
        # Box-Muller on two 24-bit uniforms from the counter's own and a second mixed draw.
        u1 = ((bits >> np.uint64(40)).astype(np.float64) + 0.5) / float(1 << 24)
        u2 = ((splitmix64(bits ^ key) >> np.uint64(40)).astype(np.float64) + 0.5) / float(1 << 24)
        normal = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
        values = np.clip(GAUSSIAN_MEAN + GAUSSIAN_STD * normal, 0.0, 1.0)
        return np.rint(values * 255.0).astype(np.uint8)


def parse_noise(spec: str) -> tuple[str, int, int]:
    """`noise:KIND:N[:SEED]` as (kind, count, seed), or a DataError saying what a noise spec looks like."""
    parts = spec.split(":")
    usage = "write noise:uniform:N or noise:gaussian:N, optionally :SEED (e.g. noise:uniform:60000:0)"
    if parts[0] != "noise" or len(parts) not in (3, 4):
        raise DataError(f"bad noise pool {spec!r}: {usage}")
    if parts[1] not in NOISE_KINDS:
        raise DataError(f"bad noise pool {spec!r}: unknown kind {parts[1]!r}; {usage}")
    numbers = []
    for name, text in zip(("N", "SEED"), parts[2:], strict=False):
        try:
            value = int(text)
        except ValueError:
            value = -1
        if value < (1 if name == "N" else 0):
            bound = "a positive integer" if name == "N" else "a non-negative integer"
            raise DataError(f"bad noise pool {spec!r}: {name} must be {bound}, got {text!r}; {usage}")
        numbers.append(value)
    return parts[1], numbers[0], numbers[1] if len(numbers) > 1 else 0


def noise_pool(kind: str, count: int, shape: Shape, seed: int = 0) -> Pool:
    """A lazy pool of `count` noise images of `shape` (see the module docstring)."""
    maker = NoiseMaker(kind, count, shape, seed)
    summary = PoolSummary(
        f"noise:{kind}:{count}:{seed}", "noise", "uint8, generated per batch (nothing stored)", count
    )
    return Pool(LazyImages(maker), "NCHW", summary)


@dataclass(frozen=True)
class NoiseReader:
    """`noise:uniform:N[:SEED]` or `noise:gaussian:N[:SEED]`: N noise images of the target's shape."""

    kind: str = "noise"

    def accepts(self, source: PoolSource) -> bool:
        return isinstance(source, str) and source.startswith("noise:")

    def open(self, source: PoolSource, shape: Shape | None) -> Pool:
        kind, count, seed = parse_noise(str(source))
        if shape is None:
            raise DataError(f"noise pool {source!r} needs the target's input shape (open_pool(..., shape=))")
        return noise_pool(kind, count, shape, seed)
