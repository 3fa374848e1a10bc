"""Images made on demand: the storage of pools that are generated (noise) or composed (mixes), not stored.

A `LazyImages` looks enough like an [N, C, H, W] array for a `Pool` to hold it as its storage: it has a
shape and a dtype, a slice of it is another `LazyImages` (nothing is made), and integer indices or
`np.asarray` make just those images. What the images are is a pure function of an `ImageMaker` and the
index, so a pool of 1,000,000 noise images costs no memory, and its identity (`fingerprint`) is its
maker's description rather than a hash of images that would first have to be made.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from activethief.data.registry import Shape
from activethief.errors import DataError


class ImageMaker(Protocol):
    """Makes image `i` of a pool of `count` images of one shape, the same image for `i` every time."""

    @property
    def count(self) -> int: ...

    @property
    def shape(self) -> Shape: ...

    @property
    def dtype(self) -> np.dtype[Any]: ...

    @property
    def identity(self) -> str:
        """A description from which the images follow (kind, parameters, seed, version)."""
        ...

    @property
    def held_bytes(self) -> int:
        """Memory the maker holds (index maps, small images), not what its images would take."""
        ...

    def make(self, indices: np.ndarray) -> np.ndarray:
        """The images at `indices` (1-D int64, each in [0, count)), [n, C, H, W] in `dtype`."""
        ...


class LazyImages:
    """Images `start`..`stop` of an `ImageMaker`, as the array-like storage of a `Pool` (layout NCHW)."""

    ndim = 4

    def __init__(self, maker: ImageMaker, start: int = 0, stop: int | None = None) -> None:
        stop = maker.count if stop is None else stop
        if not 0 <= start <= stop <= maker.count:
            raise DataError(f"lazy image range {start}:{stop} lies outside 0:{maker.count}")
        self.maker, self.start, self.stop = maker, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __repr__(self) -> str:
        return f"LazyImages({self.maker.identity!r}, {self.start}:{self.stop})"

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), *self.maker.shape)

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.maker.dtype

    @property
    def nbytes(self) -> int:
        """What the images hold in memory: the maker's own bytes only (none are stored)."""
        return self.maker.held_bytes

    @property
    def identity(self) -> str:
        """The maker's identity and this view's range: equal identities mean equal images."""
        return f"{self.maker.identity} [{self.start}:{self.stop}]"

    def fingerprint(self) -> str:
        """SHA-256 of `identity` and the image shape (the images follow from them)."""
        c, h, w = self.maker.shape
        text = f"activethief-pool/lazy {self.dtype.str} {len(self)}x{c}x{h}x{w} {self.identity}\n"
        return hashlib.sha256(text.encode()).hexdigest()

    def __getitem__(self, index: slice | int | np.ndarray | Sequence[int]) -> Any:
        """A slice (step 1): another view, nothing made. Integers or an integer array: those images."""
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step == 1:
                return LazyImages(self.maker, self.start + start, self.start + max(start, stop))
            return self.maker.make(np.arange(start, stop, step, dtype=np.int64) + self.start)
        if isinstance(index, int | np.integer):
            return self[np.array([int(index)])][0]
        rows = np.asarray(index)
        if rows.ndim != 1 or (rows.size and rows.dtype.kind not in "iu"):
            raise DataError(f"lazy images take a slice or 1-D integer indices, got {rows.dtype} {rows.shape}")
        rows = rows.astype(np.int64)
        if rows.size and (rows.min() < -len(self) or rows.max() >= len(self)):
            raise DataError(f"image index out of range for a pool of {len(self)} images")
        rows = np.where(rows < 0, rows + len(self), rows)
        return self.maker.make(rows + self.start)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """All the images of the view, made now ([n, C, H, W]; only for views that fit in memory)."""
        made = self.maker.make(np.arange(self.start, self.stop, dtype=np.int64))
        return made if dtype is None else made.astype(dtype)


def materialise(block: np.ndarray | LazyImages) -> np.ndarray:
    """`block` as a real array (a lazy view's images are made)."""
    return np.asarray(block)
