"""The verified dataset cache: IDX files are checked once, then kept as .npy arrays that load fast."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from activethief.data.idx import read_file_bytes, read_idx_bytes
from activethief.data.registry import PARTS, DatasetSpec, get_spec
from activethief.data.sources import Source, SourceUnavailable, default_sources
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


def sha256_bytes(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def _verify_and_read(spec: DatasetSpec, paths: dict[str, Path], source: str) -> dict[str, np.ndarray]:
    arrays = {}
    for part in PARTS:
        raw = read_file_bytes(paths[part])
        digest = sha256_bytes(raw)
        if digest != spec.sha256[part]:
            raise SourceUnavailable(
                f"checksum mismatch for {paths[part]} ({part}): "
                f"SHA-256 {digest}, expected {spec.sha256[part]}"
            )
        arrays[part] = read_idx_bytes(raw, name=str(paths[part]))
    images, labels = arrays["train-images"], arrays["train-labels"]
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise SourceUnavailable(f"{source}: unexpected shapes {images.shape} / {labels.shape}")
    return arrays


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
    sources: list[Source] | None = None,
    force: bool = False,
    log: Callable[[str], None] = lambda _msg: None,
) -> FetchReport:
    """Put dataset `name` into the cache, trying each source in order and verifying SHA-256.

    Raises DataError listing every source tried and why it failed when none worked.
    """
    spec = get_spec(name)
    folder = data_dir(root) / spec.name
    if is_cached(spec.name, root) and not force and local is None:
        log(f"{spec.name}: already in {folder}")
        return FetchReport(spec.name, "cache", (), already_cached=True)
    tried: list[tuple[str, str]] = []
    for source in sources if sources is not None else default_sources(Path(local) if local else None):
        label = source.describe(spec)
        with tempfile.TemporaryDirectory(prefix=f"activethief-{spec.name}-") as tmp:
            try:
                log(f"{spec.name}: trying {label}")
                arrays = _verify_and_read(spec, source.locate(spec, Path(tmp)), label)
            except (SourceUnavailable, DataError) as exc:
                log(f"{spec.name}:   {label} failed: {exc}")
                tried.append((label, str(exc)))
                continue
        _write_cache(folder, arrays, label)
        log(f"{spec.name}: fetched from {label}; 4 files verified (SHA-256); cached in {folder}")
        return FetchReport(spec.name, label, tuple(tried))
    lines = "\n".join(f"  - {label}: {why}" for label, why in tried)
    raise DataError(f"could not fetch {spec.name} from any source:\n{lines}")


_LOADED: dict[tuple[str, float], bool] = {}


def _checked_array(folder: Path, part: str, manifest: dict[str, object], name: str) -> np.ndarray:
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
    array: np.ndarray = np.load(path, allow_pickle=False)
    return array


def load(name: str, split: str = "train", *, root: Path | str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images float32 [N, 1, 28, 28] in [0, 1] and labels int64 [N] of a fetched dataset split."""
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
    images = _checked_array(folder, f"{split}-images", manifest, spec.name)
    labels = _checked_array(folder, f"{split}-labels", manifest, spec.name)
    # reshape, not [:, None]: a zero-stride channel axis sends torch down another convolution path,
    # which changes results in the last bits between a loaded array and a copy of it.
    x = images.astype(np.float32).reshape(-1, 1, *images.shape[1:])
    x /= 255.0
    return x, labels.astype(np.int64)


def remove(name: str, root: Path | str | None = None) -> None:
    """Delete a dataset from the cache."""
    shutil.rmtree(data_dir(root) / get_spec(name).name, ignore_errors=True)
