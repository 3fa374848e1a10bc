"""Fetching from a local folder, checksum verification, cache loading and the errors users see."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from activethief import data
from activethief.data.registry import DatasetSpec
from activethief.data.sources import HttpMirrors, LocalFolder, SourceUnavailable
from activethief.data.store import sha256_bytes
from activethief.errors import DataError


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture()
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict[str, bytes]]:
    """A made-up 'tiny' dataset registered for the test, with its IDX files in a folder."""
    rng = np.random.default_rng(0)
    raw = {
        "train-images": idx_bytes(rng.integers(0, 256, (20, 28, 28))),
        "train-labels": idx_bytes(rng.integers(0, 10, 20)),
        "test-images": idx_bytes(rng.integers(0, 256, (5, 28, 28))),
        "test-labels": idx_bytes(rng.integers(0, 10, 5)),
    }
    spec = DatasetSpec(
        name="tiny",
        classes=tuple(str(i) for i in range(10)),
        files=data.DATASETS["mnist"].files,
        sha256={part: sha256_bytes(b) for part, b in raw.items()},
    )
    monkeypatch.setitem(data.DATASETS, "tiny", spec)
    folder = tmp_path / "idx"
    folder.mkdir()
    for part, content in raw.items():
        name = spec.files[part]
        # Mix raw and gzip'd files, as users' folders do.
        if part.endswith("images"):
            (folder / f"{name}.gz").write_bytes(gzip.compress(content))
        else:
            (folder / name).write_bytes(content)
    return folder, raw


def test_fetch_from_local_folder_and_load(tiny: tuple[Path, dict[str, bytes]], tmp_path: Path) -> None:
    folder, _ = tiny
    lines: list[str] = []
    report = data.fetch(
        "tiny", root=tmp_path / "cache", local=folder, sources=[LocalFolder(folder)], log=lines.append
    )
    assert report.source == f"local folder {folder}"
    assert any("verified" in line for line in lines)
    x, y = data.load("tiny", "train", root=tmp_path / "cache")
    assert x.shape == (20, 1, 28, 28) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert y.shape == (20,) and y.dtype == np.int64
    xt, _ = data.load("tiny", "test", root=tmp_path / "cache")
    assert xt.shape == (5, 1, 28, 28)


def test_checksum_mismatch_names_file_and_tries_next(
    tiny: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    folder, raw = tiny
    (folder / "train-labels-idx1-ubyte").write_bytes(raw["train-labels"][:-1] + b"\x09")
    with pytest.raises(DataError) as info:
        data.fetch("tiny", root=tmp_path / "cache", sources=[LocalFolder(folder), HttpMirrors()])
    message = str(info.value)
    assert "checksum mismatch" in message and "train-labels-idx1-ubyte" in message
    assert "public mirrors" in message  # every source tried is listed with its reason


def test_missing_files_reported(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="lacks"):
        LocalFolder(tmp_path).locate(data.DATASETS["mnist"], tmp_path)


def test_corrupted_cache_is_removed_with_refetch_hint(
    tiny: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    folder, _ = tiny
    cache = tmp_path / "cache"
    data.fetch("tiny", root=cache, sources=[LocalFolder(folder)])
    target = cache / "tiny" / "train-labels.npy"
    target.write_bytes(target.read_bytes()[:-1] + b"\x01")
    with pytest.raises(DataError, match="activethief data fetch tiny --force"):
        data.load("tiny", root=cache)
    assert not target.exists()


def test_unknown_and_unfetched(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="known datasets: cifar10, fashion-mnist, mnist, mnist-on-photos"):
        data.load("imagenet")
    with pytest.raises(DataError, match="activethief data fetch mnist"):
        data.load("mnist", root=tmp_path)
    with pytest.raises(DataError, match="split"):
        data.load("mnist", "validation", root=tmp_path)


def test_env_var_sets_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ACTIVETHIEF_DATA", str(tmp_path))
    assert data.data_dir() == tmp_path
    assert data.data_dir(tmp_path / "x") == tmp_path / "x"


def test_mirrors_fail_cleanly_without_network(tmp_path: Path) -> None:
    spec = DatasetSpec(
        name="nowhere",
        classes=("a", "b"),
        files=data.DATASETS["mnist"].files,
        sha256={},
        mirrors=("http://127.0.0.1:9/",),
    )
    with pytest.raises(SourceUnavailable, match=r"127\.0\.0\.1:9"):
        HttpMirrors(timeout=2).locate(spec, tmp_path)


def test_real_datasets_load(mnist_small: tuple[np.ndarray, ...]) -> None:
    x, y, xt, _ = mnist_small
    assert x.shape == (3000, 1, 28, 28) and xt.shape == (1000, 1, 28, 28)
    assert set(np.unique(y)) == set(range(10))
    full_x, full_y = data.load("mnist", "train")
    assert full_x.shape == (60000, 1, 28, 28) and full_y.shape == (60000,)
