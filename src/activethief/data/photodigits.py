"""`mnist-on-photos`: MNIST digits blended over colour photo patches, in the spirit of MNIST-M.

Ganin & Lempitsky (ICML 2015) built MNIST-M by blending each MNIST digit over a patch cropped at random
from the BSDS500 photographs: output = |patch - digit|, per pixel and colour channel. BSDS500 cannot be
fetched here, so the patches come from the two photographs that ship with scikit-learn
(`sklearn.datasets.load_sample_images`: china.jpg and flower.jpg, 427x640 RGB). The recipe, per split:

1. each 28x28 digit is padded with 2 black pixels per side to 32x32 (no resampling, so no new values);
2. a generator seeded with (seed, split) draws, per digit, one of the photos and the top-left corner of a
   32x32 patch uniformly among all positions that fit;
3. the image is |patch - digit| in integers, per channel: uint8 [N, 3, 32, 32], the digit's label kept.

Train and test come from MNIST's train and test splits, so the dataset is 60,000 + 10,000 images in 10
classes, built in a few seconds, offline, identical for the same seed and the same decoded photographs.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from activethief.data.checksums import sha256_bytes
from activethief.data.registry import BuiltSpec
from activethief.data.sources import SourceUnavailable

SIZE = 32
_SPLITS = {"train": 0, "test": 1}
_CHUNK = 4096


def sample_photos() -> list[np.ndarray]:
    """scikit-learn's sample photographs (china.jpg, flower.jpg) as uint8 [H, W, 3]."""
    from sklearn.datasets import load_sample_images

    return [np.ascontiguousarray(image, dtype=np.uint8) for image in load_sample_images().images]


def _pad(digits: np.ndarray) -> np.ndarray:
    """Digits [N, h, w] (h, w <= SIZE) centred on a black SIZE x SIZE canvas."""
    n, h, w = digits.shape
    if h > SIZE or w > SIZE:
        raise ValueError(f"digits must be at most {SIZE}x{SIZE}, got {h}x{w}")
    top, left = (SIZE - h) // 2, (SIZE - w) // 2
    canvas = np.zeros((n, SIZE, SIZE), dtype=np.uint8)
    canvas[:, top : top + h, left : left + w] = digits
    return canvas


def blend_on_photos(digits: np.ndarray, photos: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """|patch - digit| per channel for each digit (uint8 [N, h, w]): uint8 [N, 3, SIZE, SIZE].

    Patches are drawn with `rng`: one photo per digit, then a corner uniform over the positions that fit.
    """
    if digits.dtype != np.uint8 or digits.ndim != 3:
        raise ValueError(f"digits must be uint8 [N, h, w], got {digits.dtype} {list(digits.shape)}")
    if not photos or any(p.dtype != np.uint8 or p.ndim != 3 or p.shape[2] != 3 for p in photos):
        raise ValueError("photos must be a non-empty list of uint8 [H, W, 3] images")
    if any(p.shape[0] < SIZE or p.shape[1] < SIZE for p in photos):
        raise ValueError(f"every photo must be at least {SIZE}x{SIZE}")
    n = len(digits)
    canvas = _pad(digits)
    heights = np.array([p.shape[0] for p in photos])
    widths = np.array([p.shape[1] for p in photos])
    which = rng.integers(len(photos), size=n)
    tops = rng.integers(0, heights[which] - SIZE + 1)
    lefts = rng.integers(0, widths[which] - SIZE + 1)
    offsets = np.arange(SIZE)
    out = np.empty((n, 3, SIZE, SIZE), dtype=np.uint8)
    for index, photo in enumerate(photos):
        mine = np.flatnonzero(which == index)
        for start in range(0, len(mine), _CHUNK):
            rows = mine[start : start + _CHUNK]
            ys = (tops[rows, None] + offsets)[:, :, None]
            xs = (lefts[rows, None] + offsets)[:, None, :]
            patches = photo[ys, xs].astype(np.int16)  # [m, SIZE, SIZE, 3]
            blended = np.abs(patches - canvas[rows, :, :, None].astype(np.int16))
            out[rows] = blended.transpose(0, 3, 1, 2).astype(np.uint8)
    return out


def build_split(spec: BuiltSpec, digits: np.ndarray, split: str, photos: Sequence[np.ndarray]) -> np.ndarray:
    """One split of `spec`: its generator is seeded with (spec.seed, split), independent of the other."""
    rng = np.random.default_rng([spec.seed, _SPLITS[split]])
    return blend_on_photos(digits, photos, rng)


@dataclass(frozen=True)
class BuildOnPhotos:
    """Builds the dataset from its base dataset's cache (fetching the base first if needed)."""

    root: Path

    def describe(self, spec: BuiltSpec) -> str:
        return f"built offline from {spec.base} and scikit-learn's sample photographs (seed {spec.seed})"

    def locate(self, spec: BuiltSpec, workdir: Path) -> dict[str, Path]:
        from activethief.data import store

        if not store.is_cached(spec.base, self.root):
            store.fetch(spec.base, root=self.root)
        try:
            photos = sample_photos()
        except (ImportError, OSError) as exc:
            raise SourceUnavailable(f"scikit-learn's sample photographs cannot be read: {exc}") from exc
        workdir.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        for split in _SPLITS:
            digits, labels = store.load_uint8(spec.base, split, root=self.root)
            images = build_split(spec, digits.reshape(len(digits), *digits.shape[-2:]), split, photos)
            for part, array in ((f"{split}-images", images), (f"{split}-labels", labels.astype(np.uint8))):
                paths[part] = workdir / f"{part}.npy"
                np.save(paths[part], array)
        return paths


def read_built(spec: BuiltSpec, paths: dict[str, Path]) -> dict[str, np.ndarray]:
    """The built arrays, shapes checked; warns when the images differ from the reference build."""
    arrays = {part: np.load(path, allow_pickle=False) for part, path in paths.items()}
    for split in _SPLITS:
        images, labels = arrays[f"{split}-images"], arrays[f"{split}-labels"]
        if images.shape[1:] != spec.shape or len(images) != len(labels):
            raise SourceUnavailable(f"built {split} split has shapes {images.shape} / {labels.shape}")
    differ = [
        part
        for part, expected in spec.reference_sha256.items()
        if sha256_bytes(np.ascontiguousarray(arrays[part]).tobytes()) != expected
    ]
    if differ:
        warnings.warn(
            f"{spec.name}: {', '.join(differ)} differ from the reference build (SHA-256 of the arrays); "
            "the photographs decode differently here (another JPEG decoder or scikit-learn version), so "
            "results are comparable in kind but not bit for bit",
            stacklevel=2,
        )
    return arrays
