"""Pools: one contract every reader passes, then each reader's own cases and the errors users see.

A new pool reader gets the contract by subclassing `PoolReaderContract` and writing `make`.
"""

from __future__ import annotations

import gzip
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from activethief import data
from activethief.data import Pool, open_pool
from activethief.data.checksums import sha256_bytes
from activethief.data.pools import infer_layout
from activethief.data.registry import DatasetSpec
from activethief.data.sources import LocalFolder
from activethief.errors import DataError


def made_images(n: int = 7, shape: tuple[int, int, int] = (3, 12, 16), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def as_float(images: np.ndarray) -> np.ndarray:
    out = images.astype(np.float32)
    out /= 255.0
    return out


def write_pngs(folder: Path, images: np.ndarray) -> list[Path]:
    """images uint8 [N, C, H, W] as folder/000.png ... in order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        path = folder / f"{i:03d}.png"
        pixels = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


class PoolReaderContract:
    """What every reader guarantees; a subclass writes `make`, returning a pool of exactly `images`."""

    shape: tuple[int, int, int] = (3, 12, 16)

    def make(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, images: np.ndarray) -> Pool:
        raise NotImplementedError

    def test_size_shape_and_batches(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        images = made_images(shape=self.shape)
        pool = self.make(tmp_path, monkeypatch, images)
        assert len(pool) == len(images) and pool.shape == self.shape
        batch = pool[np.array([4, 0, 2])]
        assert batch.dtype == np.float32 and batch.shape == (3, *self.shape) and batch.flags.c_contiguous
        assert np.array_equal(batch, as_float(images[[4, 0, 2]]))
        assert np.array_equal(pool[1:3], as_float(images[1:3])) and np.array_equal(
            pool[[6]], as_float(images[[6]])
        )
        assert np.array_equal(np.concatenate(list(pool.batches(3))), as_float(images))
        assert [len(b) for b in pool.batches(3)] == [3, 3, 1]

    def test_reading_never_changes_the_storage(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        pool = self.make(tmp_path, monkeypatch, made_images(shape=self.shape))
        before = pool.fingerprint
        pool[[0, 1]][:] = 7.0
        del pool.__dict__["fingerprint"]
        assert pool.fingerprint == before

    def test_fingerprint_is_content_and_order(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        images = made_images(shape=self.shape)
        first = self.make(tmp_path / "a", monkeypatch, images).fingerprint
        assert len(first) == 64
        assert self.make(tmp_path / "b", monkeypatch, images.copy()).fingerprint == first
        assert self.make(tmp_path / "c", monkeypatch, images[::-1].copy()).fingerprint != first
        changed = images.copy()
        changed[3, 0, 0, 0] ^= 1
        assert self.make(tmp_path / "d", monkeypatch, changed).fingerprint != first
        # the same uint8 images give the same identity whichever reader held them
        if self.make(tmp_path / "e", monkeypatch, images).storage.dtype == np.uint8:
            assert first == open_pool(images).fingerprint

    def test_wrong_target_shape_names_both(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        pool = self.make(tmp_path, monkeypatch, made_images(shape=self.shape))
        source = pool.summary.source if pool.summary.kind != "array" else pool.storage
        if pool.summary.kind == "folder":
            pytest.skip("folders are converted to the target shape")
        other = (self.shape[0], self.shape[1] + 1, self.shape[2])
        with pytest.raises(
            DataError, match=rf"shape \(C, H, W\) = \({self.shape[0]}, .*expected \({other[0]}, "
        ):
            open_pool(source, other, root=tmp_path / "cache")


class TestArrayNCHW(PoolReaderContract):
    def make(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, images: np.ndarray) -> Pool:
        return open_pool(images)


class TestArrayFloat(PoolReaderContract):
    def make(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, images: np.ndarray) -> Pool:
        return open_pool(as_float(images))


class TestNpyNHWC(PoolReaderContract):
    def make(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, images: np.ndarray) -> Pool:
        path = tmp_path / "pool.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, images.transpose(0, 2, 3, 1))
        return open_pool(path)


class TestNpyGray(PoolReaderContract):
    shape = (1, 10, 9)

    def make(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, images: np.ndarray) -> Pool:
        path = tmp_path / "gray.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, images[:, 0])  # [N, H, W]
        return open_pool(str(path))


class TestNpzStored(PoolReaderContract):
    def make(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, images: np.ndarray) -> Pool:
        path = tmp_path / "pool.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, labels=np.zeros(len(images)), images=images)
        return open_pool(path)


class TestNpzCompressed(PoolReaderContract):
    def make(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, images: np.ndarray) -> Pool:
        path = tmp_path / "pool.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, pixels=images.transpose(0, 2, 3, 1), other=np.zeros(3))
        return open_pool(f"{path}:pixels")


class TestFolder(PoolReaderContract):
    def make(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, images: np.ndarray) -> Pool:
        write_pngs(tmp_path / "images", images)  # PNG is lossless; same size, so the resize is exact
        return open_pool(tmp_path / "images", self.shape, root=tmp_path / "cache")


class TestFolderGrayNoCache(PoolReaderContract):
    shape = (1, 9, 11)

    def make(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, images: np.ndarray) -> Pool:
        write_pngs(tmp_path / "images", images)
        return open_pool(tmp_path / "images", self.shape, cache=False)


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


class TestDataset(PoolReaderContract):
    shape = (1, 28, 28)

    def make(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, images: np.ndarray) -> Pool:
        labels = np.zeros(len(images), dtype=np.uint8)
        raw = {
            "train-images": idx_bytes(images[:, 0]),
            "train-labels": idx_bytes(labels),
            "test-images": idx_bytes(images[:2, 0]),
            "test-labels": idx_bytes(labels[:2]),
        }
        spec = DatasetSpec(
            name="tiny",
            classes=("a", "b"),
            files=data.DATASETS["mnist"].files,  # type: ignore[attr-defined]
            sha256={part: sha256_bytes(content) for part, content in raw.items()},
        )
        monkeypatch.setitem(data.DATASETS, "tiny", spec)
        folder = tmp_path / "idx"
        folder.mkdir(parents=True)
        for part, content in raw.items():
            (folder / f"{spec.files[part]}.gz").write_bytes(gzip.compress(content))
        data.fetch("tiny", root=tmp_path / "cache", sources=[LocalFolder(folder)], force=True)
        return open_pool("tiny", root=tmp_path / "cache")


# --- datasets ----------------------------------------------------------------------------------------


def test_dataset_pool_equals_load_bit_for_bit(mnist_small: tuple[np.ndarray, ...]) -> None:
    pool = open_pool("mnist")
    x, _ = data.load("mnist", "train")
    assert len(pool) == 60000 and pool.shape == (1, 28, 28) and isinstance(pool.storage, np.memmap)
    picks = np.array([59999, 0, 12345, 7])
    assert pool[picks].tobytes() == x[picks].tobytes()
    test = open_pool("mnist:test", (1, 28, 28))
    assert len(test) == 10000 and open_pool("mnist", split="test").fingerprint == test.fingerprint
    with pytest.raises(
        DataError, match=r"mnist:train holds images of shape .* = \(1, 28, 28\); expected \(3, 32, 32\)"
    ):
        open_pool("mnist", (3, 32, 32))


def test_unfetched_dataset_says_how_to_fetch(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="activethief data fetch cifar10"):
        open_pool("cifar10", root=tmp_path)


# --- folders -----------------------------------------------------------------------------------------


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def test_folder_reads_every_format_recursively_and_skips_bad_files(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    (root / "b" / "deep").mkdir(parents=True)
    (root / "a").mkdir()
    photo(40, 30, 1).save(root / "a" / "one.PNG")
    photo(30, 40, 2).save(root / "b" / "two.jpg", quality=90)
    photo(64, 64, 3).convert("L").save(root / "b" / "deep" / "three.bmp")
    photo(20, 20, 4).save(root / "b" / "four.webp", lossless=True)
    photo(50, 20, 5).convert("RGBA").save(root / "five.png")
    (root / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    good = root / "b" / "deep" / "cut.png"
    photo(32, 32, 6).save(good)
    good.write_bytes(good.read_bytes()[:60])  # truncated
    (root / "notes.txt").write_text("not an image")
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable image file\(s\) of 7"):
        pool = open_pool(root, (3, 16, 16), root=tmp_path / "cache")
    assert len(pool) == 5 and pool.shape == (3, 16, 16)
    summary = pool.summary
    assert (summary.kind, summary.count, summary.skipped, summary.ignored) == ("folder", 5, 2, 1)
    assert [line.split(":")[0] for line in summary.skipped_files] == ["a/broken.jpg", "b/deep/cut.png"]
    batch = pool[np.arange(5)]
    assert batch.min() >= 0.0 and batch.max() <= 1.0
    gray = batch[1]  # sorted order: a/one.PNG, b/deep/three.bmp, b/four.webp, b/two.jpg, five.png
    assert np.array_equal(gray[0], gray[1]) and np.array_equal(gray[1], gray[2])  # L -> RGB replicates


def test_folder_rule_covers_then_centre_crops(tmp_path: Path) -> None:
    # 40 x 20: blue quarter, green half, red quarter. Covering 10 x 10 scales it to 20 x 10, whose
    # centre 10 x 10 is the green half.
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :10, 2] = 255
    pixels[:, 10:30, 1] = 255
    pixels[:, 30:, 0] = 255
    (tmp_path / "wide").mkdir()
    Image.fromarray(pixels).save(tmp_path / "wide" / "x.png")
    rgb = open_pool(tmp_path / "wide", (3, 10, 10), cache=False)[[0]][0]
    assert rgb[1, :, 2:8].min() > 0.95 and rgb[0, :, 2:8].max() < 0.05 and rgb[2, :, 2:8].max() < 0.05
    gray = open_pool(tmp_path / "wide", (1, 10, 10), cache=False)
    assert gray.shape == (1, 10, 10)
    green_luma = 0.587  # ITU-R 601-2 luma, Pillow's "L"
    assert abs(float(gray[[0]][0, 0, 5, 5]) - green_luma) < 0.01


def test_folder_cache_is_reused_and_invalidated(tmp_path: Path) -> None:
    images = made_images(4, (3, 8, 8))
    paths = write_pngs(tmp_path / "imgs", images)
    cache = tmp_path / "cache"
    first = open_pool(tmp_path / "imgs", (3, 8, 8), root=cache)
    assert "memory-mapped" in first.summary.storage and len(list((cache / "pools").glob("*.u8"))) == 1
    again = open_pool(tmp_path / "imgs", (3, 8, 8), root=cache)
    assert again.fingerprint == first.fingerprint and again.summary.storage == first.summary.storage
    # a changed file: new content and modification time -> decoded again, a new identity
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(paths[2])
    os.utime(paths[2], ns=(1, 1))
    changed = open_pool(tmp_path / "imgs", (3, 8, 8), root=cache)
    assert changed.fingerprint != first.fingerprint and changed[[2]].max() == 0.0
    # a rename that changes the order changes the identity too
    paths[0].rename(tmp_path / "imgs" / "zzz.png")
    reordered = open_pool(tmp_path / "imgs", (3, 8, 8), root=cache)
    assert reordered.fingerprint not in (first.fingerprint, changed.fingerprint)
    assert np.array_equal(reordered[[3]], as_float(images[[0]]))
    # a damaged cache entry is decoded again, not trusted
    for raw in (cache / "pools").glob("*.u8"):
        raw.write_bytes(b"")
    assert open_pool(tmp_path / "imgs", (3, 8, 8), root=cache).fingerprint == reordered.fingerprint


def test_folder_errors(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "readme.md").write_text("hi")
    with pytest.raises(DataError, match=r"holds no images .*\.jpg.*1 other files ignored"):
        open_pool(tmp_path / "empty", (3, 8, 8))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_bytes(b"garbage")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError, match=r"none of the 1 image files .* could be read; first: a\.png"):
            open_pool(tmp_path / "bad", (3, 8, 8), root=tmp_path / "cache")
    write_pngs(tmp_path / "ok", made_images(1, (3, 8, 8)))
    with pytest.raises(DataError, match=r"give the target's input shape \(C, H, W\)"):
        open_pool(tmp_path / "ok")


# --- array files -------------------------------------------------------------------------------------


def test_npy_is_memory_mapped_and_layouts_are_inferred(tmp_path: Path) -> None:
    images = made_images(5, (3, 8, 10))
    for name, stored in (("nchw", images), ("nhwc", images.transpose(0, 2, 3, 1))):
        np.save(tmp_path / f"{name}.npy", stored)
        pool = open_pool(tmp_path / f"{name}.npy", (3, 8, 10))
        assert isinstance(pool.storage, np.memmap) and pool.summary.storage == "uint8, memory-mapped"
        assert np.array_equal(pool[:], as_float(images))
    np.savez(tmp_path / "stored.npz", images=images)
    assert isinstance(open_pool(tmp_path / "stored.npz").storage, np.memmap)
    assert infer_layout((5, 3, 8, 3), (3, 8, 3), "x") == "NCHW"
    assert infer_layout((5, 8, 3, 3), (3, 8, 3), "x") == "NHWC"
    assert infer_layout((5, 1, 8, 3), None, "x") == "NCHW"


def test_float_pools_in_range_are_used_as_stored(tmp_path: Path) -> None:
    images = as_float(made_images(3, (1, 8, 8))).astype(np.float64)
    np.save(tmp_path / "f.npy", images)
    pool = open_pool(tmp_path / "f.npy")
    assert pool.storage.dtype == np.float64 and pool[[1]].dtype == np.float32
    assert np.allclose(pool[:], images)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.full((2, 1, 8, 8), 255.0, np.float32), r"float values in \[255, 255\]; expected \[0, 1\]"),
        (np.full((2, 1, 8, 8), np.nan, np.float32), "NaN"),
        (np.zeros((2, 1, 8, 8), np.int64), "holds int64; expected uint8"),
        (np.zeros((2, 8, 8, 4), np.uint8), r"shape \[2, 8, 8, 4\]; expected images as \[N, H, W\]"),
        (np.zeros((16, 16), np.uint8), r"shape \[16, 16\]"),
        (np.zeros((2, 5, 8, 8, 3), np.uint8), r"shape \[2, 5, 8, 8, 3\]"),
    ],
)
def test_bad_arrays_are_named(tmp_path: Path, array: np.ndarray, message: str) -> None:
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(DataError, match=message):
        open_pool(tmp_path / "bad.npy")
    with pytest.raises(DataError, match=message):
        open_pool(array)


def test_npz_member_choice(tmp_path: Path) -> None:
    images = made_images(2, (1, 8, 8))
    np.savez(tmp_path / "one.npz", whatever=images)
    assert len(open_pool(tmp_path / "one.npz")) == 2
    np.savez(tmp_path / "two.npz", x=images, y=np.zeros(2))
    assert open_pool(tmp_path / "two.npz").summary.source.endswith("two.npz:x")
    np.savez(tmp_path / "many.npz", a=images, b=images)
    with pytest.raises(DataError, match=r"several arrays \(a, b\).*many\.npz:KEY"):
        open_pool(tmp_path / "many.npz")
    with pytest.raises(DataError, match=r"no array 'c'; it holds: a, b"):
        open_pool(f"{tmp_path / 'many.npz'}:c")
    assert len(open_pool(f"{tmp_path / 'many.npz'}:b")) == 2


def test_unreadable_and_unknown_sources(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        open_pool(tmp_path / "missing.npy")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match=r"not a readable \.npy"):
        open_pool(tmp_path / "junk.npy")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"not a readable \.npz"):
        open_pool(tmp_path / "junk.npz")
    np.save(tmp_path / "objects.npy", np.array([object()] * 3), allow_pickle=True)
    with pytest.raises(DataError, match=r"not a readable \.npy"):
        open_pool(tmp_path / "objects.npy")
    with pytest.raises(DataError, match=r"cannot open pool 'imagenet'.*registered dataset \(cifar10, "):
        open_pool("imagenet")
    with pytest.raises(DataError, match=r"'photos/' \(no such file or folder\)"):
        open_pool("photos/")
    with pytest.raises(DataError, match=r"an image shape is \(C, H, W\) with C 1 or 3"):
        open_pool(made_images(), (4, 8, 8))


def test_indices_are_checked() -> None:
    pool = open_pool(made_images(3, (1, 8, 8)))
    with pytest.raises(DataError, match="1-D integers"):
        pool[np.array([0.5])]
    with pytest.raises(IndexError):
        pool[np.array([3])]
    assert pool[np.array([], dtype=np.int64)].shape == (0, 1, 8, 8)
    assert "Pool(3 x 1x8x8, uint8, in memory" in repr(pool)
