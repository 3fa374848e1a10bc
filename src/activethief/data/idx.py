"""IDX file format (LeCun's MNIST format): parse bytes into a numpy array, rejecting anything malformed."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from activethief.data.checksums import sha256_bytes
from activethief.data.registry import PARTS, DatasetSpec
from activethief.data.sources import SourceUnavailable
from activethief.errors import DataError

# Third magic byte -> element dtype (big-endian where it matters).
_DTYPES: dict[int, np.dtype[np.generic]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx_bytes(raw: bytes, *, name: str = "<bytes>") -> np.ndarray:
    """Parse an uncompressed IDX payload; `name` only labels error messages."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DataError(f"{name} is not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    dtype = _DTYPES[raw[2]]
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{name} is truncated: its IDX header is incomplete")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        kind = "truncated" if len(raw) < expected else "longer than its header says"
        raise DataError(f"{name} is {kind}: {len(raw)} bytes, expected {expected} for shape {shape}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_file_bytes(path: Path) -> bytes:
    """The decompressed content of an IDX file, raw or gzip'd (detected by content, not name)."""
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path} is a damaged gzip file: {exc}") from exc
    return data


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file from disk, raw or gzip'd."""
    return read_idx_bytes(read_file_bytes(path), name=str(path))


def read_idx_dataset(spec: DatasetSpec, paths: dict[str, Path], label: str) -> dict[str, np.ndarray]:
    """The four arrays of an IDX dataset, each file's SHA-256 (of the decompressed bytes) checked first."""
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
    if images.shape[1:] != spec.shape[1:] or len(images) != len(labels):
        raise SourceUnavailable(f"{label}: unexpected shapes {images.shape} / {labels.shape}")
    return arrays
