"""Folders of images as pools: decoded once with Pillow to the target's shape, cached as uint8.

The rule, applied to every file with a .png, .jpg, .jpeg, .bmp or .webp name (any case), found
recursively and taken in sorted order of their paths relative to the folder:

1. EXIF orientation is applied (the image as a viewer shows it);
2. converted to the target's channels: "L" (grayscale) for C = 1, "RGB" for C = 3 (alpha is dropped);
3. resized, keeping the aspect ratio, so the image just covers H x W (its short side fits; Lanczos
   filter, which also antialiases when shrinking), then centre-cropped to H x W (`PIL.ImageOps.fit`).

Files Pillow cannot read (corrupt, truncated, not really images) are skipped and counted, never fatal:
the pool's summary and a warning name them. Files with other extensions are ignored and counted.

Decoding a large folder takes minutes, so the decoded images are cached as a raw uint8 file under
`<data_dir>/pools/`, keyed by the folder's file list (relative paths, sizes, modification times), the
target shape and this rule's version, and memory-mapped from there. Any added, removed, renamed or
touched file changes the key, so the folder is decoded again; the pool's fingerprint is always of the
decoded images themselves, so a resumed run notices a changed folder either way. `cache=False` decodes
into memory each time.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from activethief.data.pools import Pool, PoolSource, PoolSummary
from activethief.data.registry import Shape
from activethief.errors import DataError
from activethief.files import atomic_path, write_text_atomic

EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp"})
RULE_VERSION = 1  # bump when the decoding rule changes, so old caches are not reused
_KEEP_REASONS = 20  # skipped files named in the summary (all are counted)


@dataclass(frozen=True)
class FolderScan:
    """The image files of a folder, sorted, and how many other files were ignored."""

    folder: Path
    files: tuple[str, ...]  # POSIX paths relative to `folder`
    ignored: int

    def key(self, shape: Shape) -> str:
        """What the decoded images depend on: file list, sizes, modification times, shape, rule."""
        digest = hashlib.sha256(f"activethief-folder/{RULE_VERSION} {shape}\n".encode())
        for rel in self.files:
            stat = (self.folder / rel).stat()
            digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:32]


def scan_folder(folder: Path) -> FolderScan:
    """Every image file under `folder` (recursively, symlinked folders not followed), in sorted order."""
    files, ignored = [], 0
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in filenames:
            if Path(name).suffix.lower() in EXTENSIONS:
                files.append((Path(dirpath) / name).relative_to(folder).as_posix())
            else:
                ignored += 1
    return FolderScan(folder, tuple(sorted(files)), ignored)


def decode_image(path: Path, shape: Shape) -> np.ndarray:
    """One image file as uint8 [C, H, W] by the module's rule; Pillow's exception when it cannot."""
    from PIL import Image, ImageOps

    c, h, w = shape
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened) or opened
        image = image.convert("L" if c == 1 else "RGB")
        image = ImageOps.fit(image, (w, h), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))
        array = np.asarray(image, dtype=np.uint8)
    return array[None] if c == 1 else array.transpose(2, 0, 1)


def _decoded(scan: FolderScan, shape: Shape, skipped: list[str]) -> Iterator[np.ndarray]:
    """The readable images of `scan` in order; each unreadable one appends 'path: reason' to `skipped`."""
    for rel in scan.files:
        try:
            yield decode_image(scan.folder / rel, shape)
        except MemoryError:
            raise
        except Exception as exc:  # any decoder failure on a user's file is a skip, never a crash
            skipped.append(f"{rel}: {type(exc).__name__}: {exc}")


def _summary(folder: Path, count: int, skipped: list[str], ignored: int, storage: str) -> PoolSummary:
    return PoolSummary(
        source=str(folder),
        kind="folder",
        storage=storage,
        count=count,
        skipped=len(skipped),
        skipped_files=tuple(skipped[:_KEEP_REASONS]),
        ignored=ignored,
    )


@dataclass(frozen=True)
class FolderReader:
    """A folder of images, decoded to the target's shape (required), cached as uint8 unless `cache=False`."""

    root: Path | str | None = None
    cache: bool = True
    kind: str = "folder"

    def accepts(self, source: PoolSource) -> bool:
        return isinstance(source, str | Path) and Path(source).expanduser().is_dir()

    def open(self, source: PoolSource, shape: Shape | None) -> Pool:
        folder = Path(str(source)).expanduser()
        if shape is None:
            raise DataError(
                f"{folder} is a folder of images: give the target's input shape (C, H, W) to decode it to "
                "(open_pool(folder, shape=(3, 32, 32)))"
            )
        scan = scan_folder(folder)
        if not scan.files:
            raise DataError(
                f"{folder} holds no images (looked recursively for {', '.join(sorted(EXTENSIONS))}; "
                f"{scan.ignored} other files ignored)"
            )
        pool = self._open_cached(scan, shape) if self.cache else self._decode_in_memory(scan, shape)
        summary = pool.summary
        if summary.count == 0:
            raise DataError(
                f"none of the {len(scan.files)} image files in {folder} could be read; first: "
                + "; ".join(summary.skipped_files[:3])
            )
        if summary.skipped:
            warnings.warn(
                f"{folder}: skipped {summary.skipped} unreadable image file(s) of {len(scan.files)} "
                f"(first: {summary.skipped_files[0]})",
                stacklevel=3,
            )
        return pool

    def _decode_in_memory(self, scan: FolderScan, shape: Shape) -> Pool:
        skipped: list[str] = []
        images = np.empty((len(scan.files), *shape), dtype=np.uint8)
        count = 0
        for image in _decoded(scan, shape, skipped):
            images[count] = image
            count += 1
        summary = _summary(scan.folder, count, skipped, scan.ignored, "uint8, in memory")
        return Pool(images[:count], "NCHW", summary)

    def _open_cached(self, scan: FolderScan, shape: Shape) -> Pool:
        from activethief.data.store import data_dir

        base = data_dir(self.root) / "pools" / scan.key(shape)
        raw, meta = base.with_suffix(".u8"), base.with_suffix(".json")
        cached = _read_meta(meta, raw, shape)
        if cached is None:  # not cached yet, or a damaged entry: decode (again)
            skipped: list[str] = []
            count = 0
            with atomic_path(raw) as tmp, tmp.open("wb") as out:
                for image in _decoded(scan, shape, skipped):
                    out.write(np.ascontiguousarray(image).data)
                    count += 1
            info = {"folder": str(scan.folder), "shape": list(shape), "count": count, "skipped": skipped}
            write_text_atomic(meta, json.dumps(info, indent=1))
        else:
            count, skipped = cached
        images = np.memmap(raw, dtype=np.uint8, mode="r", shape=(count, *shape)) if count else None
        summary = _summary(scan.folder, count, skipped, scan.ignored, f"uint8, memory-mapped from {raw}")
        return Pool(images if images is not None else np.empty((0, *shape), np.uint8), "NCHW", summary)


def _read_meta(meta: Path, raw: Path, shape: Shape) -> tuple[int, list[str]] | None:
    """A cache entry's image count and skipped files, or None when it is missing or damaged."""
    if not (meta.is_file() and raw.is_file()):
        return None
    try:
        info = json.loads(meta.read_text())
        count, skipped = int(info["count"]), [str(line) for line in info["skipped"]]
    except (ValueError, KeyError, TypeError):
        return None
    if raw.stat().st_size != count * int(np.prod(shape)):
        return None
    return count, skipped
