"""The verified dataset cache: source files are checked once, then kept as uint8 .npy arrays that load fast.

Every dataset, whatever its format, is cached the same way: `<root>/<name>/{train,test}-{images,labels}.npy`
(images uint8 [N, H, W] for one channel, [N, C, H, W] otherwise) and a manifest with each file's SHA-256.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from activethief.data.checksums import sha256_bytes, sha256_file
from activethief.data.registry import PARTS, get_spec
from activethief.data.sources import Source, SourceUnavailable
from activethief.errors import DataError
from activethief.files import atomic_path, write_text_atomic

ENV_VAR = "ACTIVETHIEF_DATA"
MANIFEST = "manifest.json"


def data_dir(override: Path | str | None = None) -> Path:
    """The cache root: `override`, else $ACTIVETHIEF_DATA, else ~/.cache/activethief."""
    if override is not None:
        return Path(override).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return Path.home() / ".cache" / "activethief"


__all__ = ["FetchReport", "data_dir", "fetch", "is_cached", "load", "load_uint8", "remove", "sha256_bytes"]


@dataclass(frozen=True)
class FetchReport:
    """What `fetch` did for one dataset: the source that worked and why the earlier ones did not."""

    dataset: str
    source: str
    skipped: tuple[tuple[str, str], ...]
    already_cached: bool = False


def is_cached(name: str, root: Path | str | None = None) -> bool:
    folder = data_dir(root) / name
    return (folder / MANIFEST).is_file() and all((folder / f"{p}.npy").is_file() for p in PARTS)


def _write_cache(folder: Path, arrays: dict[str, np.ndarray], source: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, object] = {"source": source, "sha256": {}}
    for part, array in arrays.items():
        with atomic_path(folder / f"{part}.npy") as tmp, tmp.open("wb") as handle:
            np.save(handle, np.ascontiguousarray(array))
        manifest["sha256"][part] = sha256_file(folder / f"{part}.npy")  # type: ignore[index]
    write_text_atomic(folder / MANIFEST, json.dumps(manifest, indent=2))


def fetch(
    name: str,
    *,
    root: Path | str | None = None,
    local: Path | str | None = None,
    sources: list[Source[Any]] | None = None,
    force: bool = False,
    log: Callable[[str], None] = lambda _msg: None,
) -> FetchReport:
    """Put dataset `name` into the cache, trying each of its sources in order and verifying checksums.

    `local` is a folder (or file) of the user's own copy, tried first. Raises DataError listing every
    source tried and why it failed when none worked.
    """
    spec = get_spec(name)
    folder = data_dir(root) / spec.name
    if is_cached(spec.name, root) and not force and local is None:
        log(f"{spec.name}: already in {folder}")
        return FetchReport(spec.name, "cache", (), already_cached=True)
    tried: list[tuple[str, str]] = []
    if sources is None:
        sources = spec.sources(Path(local).expanduser() if local else None, data_dir(root))
    for source in sources:
        label = source.describe(spec)
        with tempfile.TemporaryDirectory(prefix=f"activethief-{spec.name}-") as tmp:
            try:
                log(f"{spec.name}: trying {label}")
                arrays = spec.read(source.locate(spec, Path(tmp)), label)
            except (SourceUnavailable, DataError) as exc:
                log(f"{spec.name}:   {label} failed: {exc}")
                tried.append((label, str(exc)))
                continue
        _write_cache(folder, arrays, label)
        log(f"{spec.name}: fetched from {label}; verified; cached in {folder}")
        return FetchReport(spec.name, label, tuple(tried))
    lines = "\n".join(f"  - {label}: {why}" for label, why in tried)
    raise DataError(f"could not fetch {spec.name} from any source:\n{lines}")


_LOADED: dict[tuple[str, float], bool] = {}


def _checked_array(
    folder: Path, part: str, manifest: dict[str, object], name: str, *, mmap: bool = False
) -> np.ndarray:
    """A cached array, its file's SHA-256 checked once per process (and again when the file changes)."""
    path = folder / f"{part}.npy"
    key = (str(path), path.stat().st_mtime)
    if key not in _LOADED:
        expected = manifest["sha256"][part]  # type: ignore[index]
        if sha256_file(path) != expected:
            path.unlink()
            raise DataError(
                f"checksum mismatch in cached file {path}; it has been removed. "
                f"Refetch with: activethief data fetch {name} --force"
            )
        _LOADED[key] = True
    array: np.ndarray = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    return array


def load_uint8(
    name: str, split: str = "train", *, root: Path | str | None = None, mmap: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [N, C, H, W] (as cached, memory-mapped read-only with `mmap`) and labels int64 [N]."""
    spec = get_spec(name)
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r}; use 'train' or 'test'")
    folder = data_dir(root) / spec.name
    if not is_cached(spec.name, root):
        raise DataError(
            f"dataset {spec.name} is not fetched (looked in {folder}). "
            f"Run: activethief data fetch {spec.name}"
        )
    manifest = json.loads((folder / MANIFEST).read_text())
    images = _checked_array(folder, f"{split}-images", manifest, spec.name, mmap=mmap)
    labels = _checked_array(folder, f"{split}-labels", manifest, spec.name)
    if images.shape[1:] not in (spec.shape, spec.shape[1:]) or images.dtype != np.uint8:
        raise DataError(
            f"cached {spec.name} {split} images are {images.dtype} {list(images.shape)}, expected uint8 "
            f"[N, {', '.join(map(str, spec.shape))}]. "
            f"Refetch with: activethief data fetch {spec.name} --force"
        )
    # reshape, not [:, None]: a zero-stride channel axis sends torch down another convolution path,
    # which changes results in the last bits between a loaded array and a copy of it.
    return images.reshape(-1, *spec.shape), labels.astype(np.int64)


def load(name: str, split: str = "train", *, root: Path | str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images float32 [N, C, H, W] in [0, 1] (C, H, W as the dataset declares) and labels int64 [N]."""
    images, labels = load_uint8(name, split, root=root)
    x = images.astype(np.float32)
    x /= 255.0
    return x, labels


def remove(name: str, root: Path | str | None = None) -> None:
    """Delete a dataset from the cache."""
    shutil.rmtree(data_dir(root) / get_spec(name).name, ignore_errors=True)
