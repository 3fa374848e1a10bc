"""mnist-on-photos: the blending recipe, determinism from its seed, and the registered dataset."""

from __future__ import annotations

import dataclasses
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from activethief import data
from activethief.data.checksums import sha256_bytes
from activethief.data.photodigits import blend_on_photos, build_split, sample_photos
from activethief.data.registry import BuiltSpec

SPEC = data.DATASETS["mnist-on-photos"]


def digits(n: int = 50, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 28, 28), dtype=np.uint8)


def coordinate_photo(height: int = 60, width: int = 90) -> np.ndarray:
    """A photo whose pixel at (y, x) is (y, x, 200): a patch says where it was cropped."""
    ys, xs = np.mgrid[:height, :width]
    return np.stack([ys, xs, np.full_like(ys, 200)], axis=-1).astype(np.uint8)


def test_blend_is_absolute_difference_over_a_padded_digit() -> None:
    grey = np.full((40, 40, 3), 100, dtype=np.uint8)
    d = digits(5)
    out = blend_on_photos(d, [grey], np.random.default_rng(0))
    assert out.shape == (5, 3, 32, 32) and out.dtype == np.uint8
    expected = np.abs(100 - d.astype(np.int16)).astype(np.uint8)
    for channel in range(3):
        assert np.array_equal(out[:, channel, 2:30, 2:30], expected)
    assert (out[:, :, :2] == 100).all() and (out[:, :, 30:] == 100).all()  # black padding: |patch - 0|


def test_patches_are_uniform_crops_of_the_photos() -> None:
    photos = [coordinate_photo(), coordinate_photo(40, 50)[..., ::-1].copy()]
    out = blend_on_photos(np.zeros((400, 28, 28), np.uint8), photos, np.random.default_rng(3))
    first = out[:, 2, 0, 0] == 200  # which photo: channel 2 is constant 200 in the first
    assert 0.35 < first.mean() < 0.65
    tops, lefts = out[first, 0, 0, 0].astype(int), out[first, 1, 0, 0].astype(int)
    assert tops.min() >= 0 and tops.max() <= 60 - 32 and lefts.max() <= 90 - 32 and lefts.max() > 40
    for image, top, left in zip(out[first][:20], tops[:20], lefts[:20], strict=True):
        assert np.array_equal(image.transpose(1, 2, 0), photos[0][top : top + 32, left : left + 32])


def test_same_seed_same_arrays_other_seed_other_patches() -> None:
    assert isinstance(SPEC, BuiltSpec)
    photos = [coordinate_photo(), coordinate_photo(70, 40)]
    d = digits(200)
    a = build_split(SPEC, d, "train", photos)
    assert np.array_equal(a, build_split(SPEC, d.copy(), "train", photos))
    assert not np.array_equal(a, build_split(SPEC, d, "test", photos))  # splits draw independently
    other = dataclasses.replace(SPEC, seed=SPEC.seed + 1)
    assert not np.array_equal(a, build_split(other, d, "train", photos))


def test_bad_inputs_are_refused() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="uint8"):
        blend_on_photos(digits(2).astype(np.float32), [coordinate_photo()], rng)
    with pytest.raises(ValueError, match="at least 32x32"):
        blend_on_photos(digits(2), [np.zeros((20, 90, 3), np.uint8)], rng)
    with pytest.raises(ValueError, match="at most 32x32"):
        blend_on_photos(np.zeros((2, 40, 40), np.uint8), [coordinate_photo()], rng)


def test_sample_photos_are_sklearns_two() -> None:
    photos = sample_photos()
    assert [p.shape for p in photos] == [(427, 640, 3), (427, 640, 3)]


@pytest.fixture()
def cache_with_mnist(tmp_path: Path, mnist_small: tuple[np.ndarray, ...]) -> Path:
    """A fresh cache root holding a copy of the user's verified MNIST (the dataset's base)."""
    root = tmp_path / "cache"
    shutil.copytree(data.data_dir() / "mnist", root / "mnist")
    return root


def test_registered_build_matches_the_reference(cache_with_mnist: Path) -> None:
    assert isinstance(SPEC, BuiltSpec) and SPEC.shape == (3, 32, 32) and len(SPEC.classes) == 10
    lines: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a build that differs from the reference warns
        report = data.fetch("mnist-on-photos", root=cache_with_mnist, log=lines.append)
    assert "built offline from mnist" in report.source
    images, labels = data.load_uint8("mnist-on-photos", "train", root=cache_with_mnist, mmap=True)
    assert images.shape == (60000, 3, 32, 32) and labels.shape == (60000,)
    assert sha256_bytes(np.ascontiguousarray(images).tobytes()) == SPEC.reference_sha256["train-images"]
    _, mnist_labels = data.load("mnist", "train", root=cache_with_mnist)
    assert np.array_equal(labels, mnist_labels)
    x, _ = data.load("mnist-on-photos", "test", root=cache_with_mnist)
    assert x.shape == (10000, 3, 32, 32) and x.dtype == np.float32 and x.min() >= 0.0 and x.max() <= 1.0
    pool = data.open_pool("mnist-on-photos:test", (3, 32, 32), root=cache_with_mnist)
    assert pool[np.arange(5)].tobytes() == x[:5].tobytes()


def test_a_build_unlike_the_reference_warns(cache_with_mnist: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(SPEC, BuiltSpec)
    odd = dataclasses.replace(SPEC, name="odd", reference_sha256={"test-images": "0" * 64})
    monkeypatch.setitem(data.DATASETS, "odd", odd)
    with pytest.warns(UserWarning, match="test-images differ from the reference build"):
        data.fetch("odd", root=cache_with_mnist)
    assert data.is_cached("odd", cache_with_mnist)
