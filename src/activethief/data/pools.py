"""Pools: the unlabelled images a thief may query, kept as stored and converted only where the loop reads.

A `Pool` holds its images in their storage form (uint8, or float in [0, 1]; in memory or memory-mapped
from a file) and converts a batch at a time to float32 [n, C, H, W] in [0, 1], so a 1,000,000-image RGB
pool costs its 3 GB of uint8 (or nothing but page cache when memory-mapped) rather than 12 GB of float32.
Its `fingerprint` (SHA-256 of content and order, computed in chunks) is the pool's identity for resume.

`open_pool` accepts a registered dataset name, scikit-learn's digits, noise, a mix of other pools, a folder
of images, an .npy/.npz file or an array; each kind is one small reader behind the `PoolReader` interface,
tried in order. Noise and mixes are lazy (`data.lazy`): their images are made a batch at a time.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from activethief.data.lazy import LazyImages
from activethief.data.registry import DATASETS, Shape
from activethief.errors import DataError

Layout = Literal["NCHW", "NHWC", "NHW"]
Storage = np.ndarray | LazyImages  # stored images, or images made on demand (noise, mixes)
PoolSource = str | Path | np.ndarray
Indices = slice | Sequence[int] | np.ndarray

_CHUNK_BYTES = 64 << 20  # rows per chunk when a whole pool is streamed (fingerprint, range check)
_FLOAT_KINDS = "f"


@dataclass(frozen=True)
class PoolSummary:
    """Where a pool came from and what was left out: shown to users, kept in run records."""

    source: str  # what was opened, as given
    kind: str  # the reader: "dataset", "folder", "npy", "npz", "array"
    storage: str  # e.g. "uint8, memory-mapped"
    count: int  # images in the pool
    skipped: int = 0  # image files that could not be read (folders)
    skipped_files: tuple[str, ...] = ()  # the first of them, with the reason
    ignored: int = 0  # files that are not images by their extension (folders)


class Pool:
    """Images stored as uint8 (or float in [0, 1]) in layout NCHW, NHWC or NHW, read as float32 NCHW.

    Args:
        storage: the images; a memory-mapped array stays memory-mapped, a `LazyImages` (layout NCHW)
            makes each batch when it is read.
        layout: the order of `storage`'s axes (NHW means one channel).
        summary: where the pool came from.
    """

    def __init__(self, storage: Storage, layout: Layout, summary: PoolSummary) -> None:
        expected_ndim = 3 if layout == "NHW" else 4
        if isinstance(storage, LazyImages) and layout != "NCHW":
            raise DataError(f"lazy images are NCHW, not {layout}")
        if storage.ndim != expected_ndim:
            raise DataError(f"a {layout} pool needs a {expected_ndim}-D array, got {list(storage.shape)}")
        if storage.dtype != np.uint8 and storage.dtype.kind not in _FLOAT_KINDS:
            raise DataError(f"pool storage must be uint8 or float, got {storage.dtype}")
        self.storage, self.layout, self.summary = storage, layout, summary

    def __len__(self) -> int:
        return int(self.storage.shape[0])

    def __repr__(self) -> str:
        c, h, w = self.shape
        return f"Pool({len(self)} x {c}x{h}x{w}, {self.summary.storage}, from {self.summary.source!r})"

    @property
    def shape(self) -> Shape:
        """(C, H, W) of one image."""
        s = self.storage.shape
        if self.layout == "NHW":
            return (1, int(s[1]), int(s[2]))
        if self.layout == "NHWC":
            return (int(s[3]), int(s[1]), int(s[2]))
        return (int(s[1]), int(s[2]), int(s[3]))

    @property
    def nbytes(self) -> int:
        """Bytes of the storage (on disk when memory-mapped; held by the maker when lazy)."""
        return int(self.storage.nbytes)

    def stored(self, indices: Indices) -> np.ndarray:
        """The images at `indices` in their stored dtype, [n, C, H, W] (what mixes gather)."""
        return self._canonical(np.asarray(self.storage[indices]))

    def __getitem__(self, indices: Indices) -> np.ndarray:
        """The images at `indices` (a slice or 1-D integer indices, any order): float32 [n, C, H, W]."""
        if not isinstance(indices, slice):
            indices = np.asarray(indices)
            if indices.ndim != 1 or (indices.size and indices.dtype.kind not in "iu"):
                raise DataError(
                    f"pool indices must be a slice or 1-D integers, got {indices.dtype} {indices.shape}"
                )
        return self._to_float(np.asarray(self.storage[indices]))

    def batches(self, batch_size: int = 1024) -> Iterator[np.ndarray]:
        """The whole pool in order, one float32 [<=batch_size, C, H, W] batch at a time."""
        if batch_size < 1:
            raise DataError(f"batch_size must be at least 1, got {batch_size}")
        for start in range(0, len(self), batch_size):
            yield self[start : start + batch_size]

    def to_array(self) -> np.ndarray:
        """The whole pool as one float32 [N, C, H, W] array (4 bytes per value: only for small pools)."""
        return self[:]

    def _canonical(self, block: np.ndarray) -> np.ndarray:
        """`block` of storage as [n, C, H, W] in its stored dtype (a view where possible)."""
        if self.layout == "NHWC":
            return block.transpose(0, 3, 1, 2)
        if self.layout == "NHW":
            return block.reshape(block.shape[0], 1, *block.shape[1:])
        return block

    def _to_float(self, block: np.ndarray) -> np.ndarray:
        out = np.array(self._canonical(block), dtype=np.float32, order="C")
        if self.storage.dtype == np.uint8:
            out /= 255.0  # in float32, as data.load does, so both give the same values bit for bit
        return out

    def chunks(self) -> Iterator[np.ndarray]:
        """The storage in order, [n, C, H, W] blocks of about 64 MB in the stored dtype (for streaming)."""
        row = max(1, int(np.prod(self.storage.shape[1:])) * self.storage.dtype.itemsize)
        step = max(1, _CHUNK_BYTES // row)
        for start in range(0, len(self), step):
            yield self._canonical(np.asarray(self.storage[start : start + step]))

    @cached_property
    def fingerprint(self) -> str:
        """SHA-256 of the images' content and order (stored dtype, NCHW, C order), streamed in chunks.

        The same images give the same fingerprint whichever file layout held them; one changed pixel or
        two swapped images give another. A lazy pool's fingerprint hashes its maker's description (its
        images follow from it), so a 1,000,000-image noise pool is identified without being made.
        """
        if isinstance(self.storage, LazyImages):
            return self.storage.fingerprint()
        c, h, w = self.shape
        digest = hashlib.sha256(
            f"activethief-pool/1 {self.storage.dtype.str} {len(self)}x{c}x{h}x{w}\n".encode()
        )
        for block in self.chunks():
            digest.update(np.ascontiguousarray(block).data)
        return digest.hexdigest()


def check_shape(shape: Sequence[int] | None) -> Shape | None:
    """`shape` as a (C, H, W) tuple of positive ints with C 1 or 3, or a DataError."""
    if shape is None:
        return None
    dims = tuple(int(d) for d in shape)
    if len(dims) != 3 or dims[0] not in (1, 3) or min(dims) < 1:
        raise DataError(f"an image shape is (C, H, W) with C 1 or 3 and H, W positive, got {tuple(shape)}")
    return (dims[0], dims[1], dims[2])


def infer_layout(shape: tuple[int, ...], expected: Shape | None, name: str) -> Layout:
    """The layout of an image array of `shape`: [N, H, W], [N, C, H, W] or [N, H, W, C] with C in {1, 3}."""
    layouts: list[Layout] = []
    if len(shape) == 3:
        layouts = ["NHW"]
    elif len(shape) == 4:
        layouts = [lay for lay, c in (("NCHW", shape[1]), ("NHWC", shape[3])) if c in (1, 3)]  # type: ignore[misc]
    if not layouts:
        raise DataError(
            f"{name} has shape {list(shape)}; expected images as [N, H, W], [N, C, H, W] or [N, H, W, C] "
            "with C = 1 or 3"
        )
    if len(layouts) > 1 and expected is not None:
        fitting = [lay for lay in layouts if _shape_in(shape, lay) == expected]
        layouts = fitting or layouts
    return layouts[0]


def _shape_in(shape: tuple[int, ...], layout: Layout) -> Shape:
    if layout == "NHW":
        return (1, shape[1], shape[2])
    if layout == "NHWC":
        return (shape[3], shape[1], shape[2])
    return (shape[1], shape[2], shape[3])


def check_values(storage: np.ndarray, name: str) -> None:
    """uint8, or float in [0, 1] without NaN (checked in chunks); a DataError naming what was found."""
    if storage.dtype == np.uint8:
        return
    if storage.dtype.kind not in _FLOAT_KINDS:
        raise DataError(
            f"{name} holds {storage.dtype}; expected uint8 (0-255) or float in [0, 1]. "
            "Convert it, e.g. array.astype(np.uint8) for integer pixels 0-255"
        )
    low, high, step = np.inf, -np.inf, max(1, _CHUNK_BYTES // max(1, storage[:1].nbytes))
    for start in range(0, len(storage), step):
        block = np.asarray(storage[start : start + step])
        if np.isnan(block).any():
            raise DataError(f"{name} holds NaN; expected float pixel values in [0, 1]")
        low, high = min(low, float(block.min(initial=np.inf))), max(high, float(block.max(initial=-np.inf)))
    if low < 0.0 or high > 1.0:
        raise DataError(
            f"{name} holds float values in [{low:g}, {high:g}]; expected [0, 1]. "
            "Divide 0-255 pixels by 255 or store them as uint8"
        )


def array_pool(array: np.ndarray, expected: Shape | None, summary: PoolSummary) -> Pool:
    """A pool over `array` as it is (no copy), its layout inferred and values checked."""
    layout = infer_layout(array.shape, expected, summary.source)
    check_values(array, summary.source)
    return Pool(array, layout, summary)


class PoolReader(Protocol):
    """One kind of pool source: says whether it can read a source, then opens it."""

    @property
    def kind(self) -> str: ...

    def accepts(self, source: PoolSource) -> bool: ...

    def open(self, source: PoolSource, shape: Shape | None) -> Pool: ...


def _path(source: PoolSource) -> Path | None:
    return Path(source).expanduser() if isinstance(source, str | Path) else None


@dataclass(frozen=True)
class ArrayReader:
    """An array already in memory (uint8, or float in [0, 1]); no copy is made."""

    kind: str = "array"

    def accepts(self, source: PoolSource) -> bool:
        return isinstance(source, np.ndarray)

    def open(self, source: PoolSource, shape: Shape | None) -> Pool:
        assert isinstance(source, np.ndarray)
        storage = f"{source.dtype}, in memory"
        return array_pool(source, shape, PoolSummary("<array>", self.kind, storage, len(source)))


@dataclass(frozen=True)
class DatasetReader:
    """A registered dataset by name, `NAME` or `NAME:SPLIT`: its cached uint8 images, memory-mapped."""

    split: str = "train"
    root: Path | str | None = None
    kind: str = "dataset"

    def _name_split(self, source: PoolSource) -> tuple[str, str]:
        name, _, split = str(source).partition(":")
        return name, split or self.split

    def accepts(self, source: PoolSource) -> bool:
        return isinstance(source, str) and self._name_split(source)[0] in DATASETS

    def open(self, source: PoolSource, shape: Shape | None) -> Pool:
        from activethief.data.store import load_uint8

        name, split = self._name_split(source)
        images, _ = load_uint8(name, split, root=self.root, mmap=True)
        summary = PoolSummary(f"{name}:{split}", self.kind, "uint8, memory-mapped", len(images))
        return Pool(images, "NCHW", summary)


@dataclass(frozen=True)
class NpyReader:
    """An .npy file, memory-mapped read-only (it is never loaded whole)."""

    kind: str = "npy"

    def accepts(self, source: PoolSource) -> bool:
        path = _path(source)
        return path is not None and path.suffix.lower() == ".npy"

    def open(self, source: PoolSource, shape: Shape | None) -> Pool:
        path = _existing(source)
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(f"{path} is not a readable .npy array file: {exc}") from exc
        storage = f"{array.dtype}, memory-mapped"
        return array_pool(array, shape, PoolSummary(str(path), self.kind, storage, len(array)))


@dataclass(frozen=True)
class NpzReader:
    """An .npz archive (`FILE.npz` or `FILE.npz:KEY`): the member `KEY`, `images`, `x` or the only one.

    Members stored uncompressed (np.savez) are memory-mapped in place; compressed ones (np.savez_compressed)
    are decompressed into memory once, in their stored dtype.
    """

    kind: str = "npz"

    def _split(self, source: PoolSource) -> tuple[Path, str | None]:
        text = str(source)
        head, sep, key = text.rpartition(":")
        if sep and head.lower().endswith(".npz"):
            return Path(head).expanduser(), key
        return Path(text).expanduser(), None

    def accepts(self, source: PoolSource) -> bool:
        return isinstance(source, str | Path) and self._split(source)[0].suffix.lower() == ".npz"

    def open(self, source: PoolSource, shape: Shape | None) -> Pool:
        path, key = self._split(source)
        path = _existing(path)
        try:
            with zipfile.ZipFile(path) as archive:
                names = [n.removesuffix(".npy") for n in archive.namelist() if n.endswith(".npy")]
                member = _npz_member(names, key, path)
                info = archive.getinfo(member + ".npy")
            if info.compress_type == zipfile.ZIP_STORED:
                array, storage = _npz_memmap(path, info), "memory-mapped"
            else:
                with np.load(path, allow_pickle=False) as npz:
                    array, storage = npz[member], "in memory (compressed .npz)"
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
            raise DataError(f"{path} is not a readable .npz archive: {exc}") from exc
        summary = PoolSummary(f"{path}:{member}", self.kind, f"{array.dtype}, {storage}", len(array))
        return array_pool(array, shape, summary)


def _npz_member(names: list[str], key: str | None, path: Path) -> str:
    if key is not None:
        if key not in names:
            raise DataError(f"{path} has no array {key!r}; it holds: {', '.join(names) or 'nothing'}")
        return key
    if len(names) == 1:
        return names[0]
    for preferred in ("images", "x"):
        if preferred in names:
            return preferred
    raise DataError(
        f"{path} holds several arrays ({', '.join(names) or 'none'}) and none is called 'images' or 'x'; "
        f"name one: {path}:KEY"
    )


def _npz_memmap(path: Path, info: zipfile.ZipInfo) -> np.ndarray:
    """A read-only memory map of an uncompressed .npz member, found through its zip local header."""
    with path.open("rb") as handle:
        handle.seek(info.header_offset)
        local = handle.read(30)
        if local[:4] != b"PK\x03\x04":
            raise ValueError(f"bad zip local header for {info.filename}")
        name_len, extra_len = int.from_bytes(local[26:28], "little"), int.from_bytes(local[28:30], "little")
        handle.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
        if dtype.hasobject:
            raise ValueError(f"{info.filename} holds Python objects")
        offset = handle.tell()
    order: Literal["C", "F"] = "F" if fortran else "C"
    array: np.ndarray = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order=order)
    return array


def _existing(source: PoolSource | Path) -> Path:
    path = Path(str(source)).expanduser()
    if not path.is_file():
        raise DataError(f"pool file {path} does not exist")
    return path


def default_readers(
    *, split: str = "train", root: Path | str | None = None, cache: bool = True
) -> tuple[PoolReader, ...]:
    """The readers `open_pool` tries, in order: arrays, dataset names, `sklearn-digits`, `noise:...`,
    `mix:...`, `aug:...`, folders, .npy, .npz.

    A name that is a registered dataset (or one of the generated pools) means that even if a folder of
    that name exists here; write `./NAME` for the folder.
    """
    from activethief.data.digits import DigitsReader
    from activethief.data.imagefolder import FolderReader
    from activethief.data.mix import MixReader
    from activethief.data.noise import NoiseReader
    from activethief.data.views import ViewReader

    return (
        ArrayReader(),
        DatasetReader(split, root),
        DigitsReader(),
        NoiseReader(),
        MixReader(split, root, cache),
        ViewReader(split, root, cache),
        FolderReader(root=root, cache=cache),
        NpyReader(),
        NpzReader(),
    )


def open_pool(
    source: PoolSource,
    shape: Sequence[int] | None = None,
    *,
    split: str = "train",
    root: Path | str | None = None,
    cache: bool = True,
    readers: Sequence[PoolReader] | None = None,
) -> Pool:
    """Open a pool of unlabelled images for stealing.

    Args:
        source: a registered dataset name (`NAME` or `NAME:SPLIT`), `sklearn-digits[:framed]`
            (scikit-learn's 1,797 digits, `data.digits`), `noise:uniform:N[:SEED]` or
            `noise:gaussian:N[:SEED]` (`data.noise`), `mix:SPEC@COUNT+SPEC@COUNT[:SEED]` (`data.mix`),
            `aug:VIEWS:SPEC` (transformed views of another pool, `data.views`),
            a folder of images (PNG, JPEG, BMP, WebP; recursive), an .npy or .npz file (`FILE.npz:KEY`
            picks a member), or an array.
        shape: the target's input shape (C, H, W). Folders, digits and noise are made in it; other pools
            must match it. Required for folders and noise.
        split: the dataset split when `source` names a dataset without one.
        root: the dataset cache root (see `data_dir`); folder decodes are cached under it.
        cache: keep a folder's decoded images in the cache (see `imagefolder`).
        readers: the readers to try, in order (default `default_readers`).

    Raises:
        DataError: the source is of no known kind, unreadable, or its images are not of `shape`.
    """
    expected = check_shape(shape)
    for reader in readers if readers is not None else default_readers(split=split, root=root, cache=cache):
        if reader.accepts(source):
            pool = reader.open(source, expected)
            if expected is not None and pool.shape != expected:
                raise DataError(
                    f"pool {pool.summary.source} holds images of shape (C, H, W) = {pool.shape}; "
                    f"expected {expected} (the target's input shape)"
                )
            return pool
    path = _path(source)
    missing = " (no such file or folder)" if path is not None and not path.exists() else ""
    raise DataError(
        f"cannot open pool {str(source)!r}{missing}: it is neither a registered dataset "
        f"({', '.join(sorted(DATASETS))}), sklearn-digits, noise:KIND:N, mix:SPEC@COUNT+..., "
        "a folder of images, nor an .npy/.npz file"
    )
