"""CIFAR-10: a small archive in the published layout, checksums, the restricted unpickler, the cache."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from activethief import data
from activethief.data.cifar import safe_unpickle
from activethief.data.registry import ArchiveSpec
from activethief.data.sources import ArchiveDownload, ArchiveFolder, SourceUnavailable
from activethief.errors import DataError

PER_BATCH = 3


def batch_pickle(images: np.ndarray, labels: list[int], protocol: int) -> bytes:
    """One batch as the CIFAR python version stores it: a dict of flat channel-major rows and labels."""
    batch = {
        "batch_label": "training batch",
        "labels": labels,
        "data": images.reshape(len(images), -1),
        "filenames": [f"img_{i}.png" for i in range(len(images))],
    }
    return pickle.dumps(batch, protocol=protocol)


def add_member(tar: tarfile.TarFile, name: str, raw: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(raw)
    tar.addfile(info, io.BytesIO(raw))


def make_archive(
    folder: Path, *, protocol: int = 2, members: dict[str, bytes] | None = None
) -> tuple[Path, np.ndarray, np.ndarray]:
    """cifar-10-python.tar.gz with five training batches and a test batch of PER_BATCH images each."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (6 * PER_BATCH, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, 6 * PER_BATCH)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        add_member(tar, "cifar-10-batches-py/batches.meta", pickle.dumps({"label_names": ["a"] * 10}))
        for i, name in enumerate(names):
            rows = slice(i * PER_BATCH, (i + 1) * PER_BATCH)
            raw = batch_pickle(images[rows], [int(v) for v in labels[rows]], protocol)
            if members is not None and name in members:
                raw = members[name]
            add_member(tar, f"cifar-10-batches-py/{name}", raw)
    return path, images, labels


def spec_for(path: Path) -> ArchiveSpec:
    """The real cifar10 spec with the checksums of the test's archive: the hook tests use instead of the
    published ones (the real spec keeps verifying the real archive)."""
    raw = path.read_bytes()
    real = data.DATASETS["cifar10"]
    assert isinstance(real, ArchiveSpec)
    return dataclasses.replace(
        real, md5=hashlib.md5(raw).hexdigest(), sha256=hashlib.sha256(raw).hexdigest(), size=len(raw)
    )


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_fetch_from_local_copy_and_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, protocol: int
) -> None:
    path, images, labels = make_archive(tmp_path / "copy", protocol=protocol)
    monkeypatch.setitem(data.DATASETS, "cifar10", spec_for(path))
    lines: list[str] = []
    report = data.fetch("cifar10", root=tmp_path / "cache", local=path.parent, log=lines.append)
    assert report.source == f"local copy in {path.parent}"
    x, y = data.load("cifar10", "train", root=tmp_path / "cache")
    assert x.shape == (5 * PER_BATCH, 3, 32, 32) and x.dtype == np.float32
    expected = images[: 5 * PER_BATCH].astype(np.float32)
    expected /= 255.0
    assert np.array_equal(x, expected)  # rows are red, green, blue planes in turn
    assert np.array_equal(y, labels[: 5 * PER_BATCH]) and y.dtype == np.int64
    xt, yt = data.load("cifar10", "test", root=tmp_path / "cache")
    assert xt.shape == (PER_BATCH, 3, 32, 32) and np.array_equal(yt, labels[5 * PER_BATCH :])


def test_from_may_name_the_archive_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, _, _ = make_archive(tmp_path / "copy")
    monkeypatch.setitem(data.DATASETS, "cifar10", spec_for(path))
    data.fetch("cifar10", root=tmp_path / "cache", sources=[ArchiveFolder(path)])
    assert data.is_cached("cifar10", tmp_path / "cache")


def test_real_checksums_refuse_another_archive(tmp_path: Path) -> None:
    path, _, _ = make_archive(tmp_path / "copy")
    with pytest.raises(DataError) as info:
        data.fetch("cifar10", root=tmp_path / "cache", sources=[ArchiveFolder(path.parent)])
    assert "170,498,071" in str(info.value) and str(path) in str(info.value)
    real = data.DATASETS["cifar10"]
    same_size = dataclasses.replace(spec_for(path), md5=real.md5)  # type: ignore[attr-defined]
    with pytest.raises(SourceUnavailable, match=r"checksum mismatch.*MD5"):
        same_size.read({"archive": path}, "test")
    assert not data.is_cached("cifar10", tmp_path / "cache")


def test_published_checksums_are_recorded() -> None:
    spec = data.DATASETS["cifar10"]
    assert isinstance(spec, ArchiveSpec)
    assert spec.md5 == "c58f30108f718f92721af3b95e74349a"
    assert spec.sha256 == "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
    assert spec.urls == ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",)
    assert spec.shape == (3, 32, 32) and len(spec.classes) == 10


class _Exploit:
    """A pickle that would delete a file when loaded by an unrestricted unpickler."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.remove, (str(self.target),))


def test_restricted_unpickler_refuses_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sentinel = tmp_path / "sentinel"
    sentinel.write_text("still here")
    evil = pickle.dumps({"data": _Exploit(sentinel), "labels": [0]})
    path, _, _ = make_archive(tmp_path / "copy", members={"data_batch_3": evil})
    monkeypatch.setitem(data.DATASETS, "cifar10", spec_for(path))
    with pytest.raises(DataError, match=r"data_batch_3.*refusing to load (posix|os|nt)\.(remove|unlink)"):
        data.fetch("cifar10", root=tmp_path / "cache", sources=[ArchiveFolder(path.parent)])
    assert sentinel.read_text() == "still here"


def test_unpickler_reads_arrays_of_every_protocol() -> None:
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        loaded = safe_unpickle(pickle.dumps({"data": array}, protocol=protocol), name="t")
        assert np.array_equal(loaded["data"], array)


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (pickle.dumps([1, 2, 3]), "holds a list, expected a dict"),
        (pickle.dumps({"data": np.zeros((2, 3072), np.uint8)}), "lacks labels"),
        (pickle.dumps({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}), r"uint8 \[n, 3072\]"),
        (pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0]}), "2 images but labels"),
        (pickle.dumps({"data": np.zeros((1, 3072), np.uint8), "labels": [10]}), r"labels outside \[0, 10\)"),
        (b"not a pickle at all", "not a valid CIFAR batch"),
    ],
)
def test_malformed_batches_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, member: bytes, message: str
) -> None:
    path, _, _ = make_archive(tmp_path / "copy", members={"test_batch": member})
    monkeypatch.setitem(data.DATASETS, "cifar10", spec_for(path))
    with pytest.raises(DataError, match=message):
        data.DATASETS["cifar10"].read({"archive": path}, "test")


def test_missing_member_and_not_an_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        add_member(tar, "cifar-10-batches-py/batches.meta", pickle.dumps({}))
    monkeypatch.setitem(data.DATASETS, "cifar10", spec_for(path))
    with pytest.raises(DataError, match="lacks cifar-10-batches-py/data_batch_1"):
        data.DATASETS["cifar10"].read({"archive": path}, "test")
    path.write_bytes(b"plain text, not gzip")
    monkeypatch.setitem(data.DATASETS, "cifar10", spec_for(path))
    with pytest.raises(DataError, match=r"not a readable \.tar\.gz"):
        data.DATASETS["cifar10"].read({"archive": path}, "test")


def test_local_copy_missing_and_mirror_unreachable(tmp_path: Path) -> None:
    spec = data.DATASETS["cifar10"]
    assert isinstance(spec, ArchiveSpec)
    with pytest.raises(SourceUnavailable, match=r"holds no cifar-10-python\.tar\.gz"):
        ArchiveFolder(tmp_path).locate(spec, tmp_path)
    offline = dataclasses.replace(spec, urls=("http://127.0.0.1:9/cifar-10-python.tar.gz",))
    with pytest.raises(SourceUnavailable, match=r"127\.0\.0\.1:9"):
        ArchiveDownload(timeout=2).locate(offline, tmp_path / "work")
