"""IDX parsing: valid files, gzip, truncation, wrong magic."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from activethief.data import read_idx, read_idx_bytes
from activethief.errors import DataError


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_reads_images_and_labels() -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx_bytes(idx_bytes(images)), images)
    labels = np.array([7, 1, 0], dtype=np.uint8)
    assert np.array_equal(read_idx_bytes(idx_bytes(labels)), labels)


def test_reads_gzip_by_content(tmp_path: Path) -> None:
    images = np.ones((3, 28, 28), dtype=np.uint8)
    path = tmp_path / "images-no-gz-suffix"
    path.write_bytes(gzip.compress(idx_bytes(images)))
    assert read_idx(path).shape == (3, 28, 28)


def test_truncated_file_is_named() -> None:
    raw = idx_bytes(np.ones((5, 28, 28), dtype=np.uint8))[:-10]
    with pytest.raises(DataError, match="truncated"):
        read_idx_bytes(raw, name="train-images")


def test_wrong_magic_number() -> None:
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx_bytes(b"\x50\x4b\x03\x04" + b"\0" * 100, name="zip")


def test_empty_and_header_only() -> None:
    with pytest.raises(DataError):
        read_idx_bytes(b"")
    with pytest.raises(DataError, match="truncated"):
        read_idx_bytes(bytes([0, 0, 8, 3, 0, 0]))


def test_trailing_bytes_rejected() -> None:
    with pytest.raises(DataError, match="longer"):
        read_idx_bytes(idx_bytes(np.ones(4, dtype=np.uint8)) + b"xx")
