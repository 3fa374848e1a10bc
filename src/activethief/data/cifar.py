"""The CIFAR 'python version' archives (Krizhevsky, 2009): verified, then read with a restricted unpickler.

The archive is a .tar.gz of pickled dicts, one per batch: b"data" (uint8 [n, 3072], the red, green and
blue planes of each 32x32 image in turn) and b"labels". Pickle can run arbitrary code, so the archive's
checksums are verified before anything is unpickled, and the unpickler resolves only the few NumPy names
an array needs: a tampered or substituted file cannot call anything else.
"""

from __future__ import annotations

import importlib
import io
import pickle
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from activethief.data.checksums import file_digests
from activethief.data.registry import ArchiveSpec
from activethief.data.sources import SourceUnavailable
from activethief.errors import DataError

# The only globals a pickled uint8 array refers to (NumPy 1 names; NumPy 2 moved numpy.core to _core),
# and _codecs.encode, which Python 3 writes for bytes at pickle protocol 2 (it only turns str into bytes).
_ALLOWED = {
    ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, numbers, strings and NumPy arrays; refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of a NumPy array")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module.removeprefix("numpy.core.")
        return getattr(importlib.import_module(module), name)


def safe_unpickle(raw: bytes, *, name: str) -> Any:
    """Unpickle `raw` (Python 2 pickles included, strings as latin-1) allowing only NumPy array globals."""
    try:
        return _ArrayUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DataError(f"{name} is not a valid CIFAR batch: {exc}") from exc


def verify_archive(spec: ArchiveSpec, path: Path) -> None:
    """Check the archive's size, MD5 and SHA-256 against the published ones; SourceUnavailable if not."""
    size = path.stat().st_size
    if size != spec.size:
        raise SourceUnavailable(f"{path} has {size:,} bytes; {spec.archive} has {spec.size:,}")
    digests = file_digests(path, ("md5", "sha256"))
    for algorithm, expected in (("md5", spec.md5), ("sha256", spec.sha256)):
        if digests[algorithm] != expected:
            raise SourceUnavailable(
                f"checksum mismatch for {path}: {algorithm.upper()} {digests[algorithm]}, expected {expected}"
            )


def _batch(spec: ArchiveSpec, raw: bytes, member: str) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [n, C, H, W] and labels uint8 [n] of one pickled batch, shapes and values checked."""
    batch = safe_unpickle(raw, name=member)
    if not isinstance(batch, dict):
        raise DataError(f"{member} holds a {type(batch).__name__}, expected a dict")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    missing = {"data", spec.label_key} - batch.keys()
    if missing:
        raise DataError(f"{member} lacks {', '.join(sorted(missing))} (has {', '.join(map(str, batch))})")
    data, labels = batch["data"], np.asarray(batch[spec.label_key])
    row = int(np.prod(spec.shape))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != row:
        given = f"{data.dtype} {list(data.shape)}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{member}: data must be uint8 [n, {row}], got {given}")
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu":
        raise DataError(f"{member}: {len(data)} images but labels of shape {labels.shape} ({labels.dtype})")
    if labels.size and (labels.min() < 0 or labels.max() >= len(spec.classes)):
        raise DataError(f"{member}: labels outside [0, {len(spec.classes)})")
    return data.reshape(-1, *spec.shape), labels.astype(np.uint8)


def read_pickle_archive(spec: ArchiveSpec, path: Path) -> dict[str, np.ndarray]:
    """The four cache arrays of a verified archive; members are read in memory, nothing is extracted."""
    verify_archive(spec, path)
    arrays: dict[str, np.ndarray] = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for split, members in (("train", spec.train_members), ("test", spec.test_members)):
                parts = []
                for member in members:
                    handle = tar.extractfile(member) if member in tar.getnames() else None
                    if handle is None:
                        raise DataError(f"{path} lacks {member}")
                    parts.append(_batch(spec, handle.read(), member))
                arrays[f"{split}-images"] = np.concatenate([images for images, _ in parts])
                arrays[f"{split}-labels"] = np.concatenate([labels for _, labels in parts])
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{path} is not a readable .tar.gz: {exc}") from exc
    return arrays
