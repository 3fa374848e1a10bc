"""Out-of-domain pools: scikit-learn's digits, lazy noise, mixes of other pools, their specs and errors,
and a tiny steal through each (a small callable target, no monkeypatching)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from activethief import CallableOracle, steal
from activethief.data import open_pool
from activethief.data.lazy import LazyImages
from activethief.data.mix import parse_mix
from activethief.data.noise import parse_noise
from activethief.errors import ConfigError, DataError
from activethief.steal import RoundEvent
from activethief.training import FitConfig

GRAY, RGB = (1, 28, 28), (3, 16, 16)
QUICK = FitConfig(epochs=1, patience=1, batch_size=50, warmup_steps=2, min_steps=4)


# --- sklearn-digits ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [GRAY, RGB])
def test_digits_fill_the_target_shape_in_range(shape: tuple[int, int, int]) -> None:
    pool = open_pool("sklearn-digits", shape)
    images = pool.to_array()
    assert len(pool) == 1797 and pool.shape == shape and images.shape == (1797, *shape)
    assert images.dtype == np.float32 and images.min() == 0.0 and images.max() == 1.0
    if shape[0] == 3:  # the grey replicated
        assert np.array_equal(images[:, 0], images[:, 1]) and np.array_equal(images[:, 0], images[:, 2])
    assert open_pool("sklearn-digits", shape).fingerprint == pool.fingerprint


def test_digits_match_sklearn_and_framed_leaves_a_black_border() -> None:
    from sklearn.datasets import load_digits

    native = open_pool("sklearn-digits").to_array()[:, 0]  # no shape: their own 8x8
    assert np.allclose(native, load_digits().images / 16.0, atol=0.5 / 255)
    framed = open_pool("sklearn-digits:framed", GRAY).to_array()[:, 0]
    assert framed[:, :4].max() == 0.0 and framed[:, -4:].max() == 0.0 and framed[:, 4:24].max() == 1.0
    with pytest.raises(DataError, match=r"sklearn-digits:framed"):
        open_pool("sklearn-digits:square", GRAY)


# --- noise ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["uniform", "gaussian"])
def test_noise_is_deterministic_per_index_and_seed(kind: str) -> None:
    pool = open_pool(f"noise:{kind}:5000:3", RGB)
    assert len(pool) == 5000 and pool.shape == RGB and pool.summary.kind == "noise"
    rows = np.array([4999, 7, 7, 0])
    batch = pool[rows]
    assert batch.dtype == np.float32 and batch.shape == (4, *RGB)
    assert np.array_equal(batch[1], batch[2]) and not np.array_equal(batch[0], batch[1])
    # any access order, slices and another opening give the same images
    assert np.array_equal(pool[5:9], pool[np.array([5, 6, 7, 8])])
    assert np.array_equal(open_pool(f"noise:{kind}:5000:3", RGB)[rows], batch)
    assert not np.array_equal(open_pool(f"noise:{kind}:5000:4", RGB)[rows], batch)
    assert (
        open_pool(f"noise:{kind}:5000", RGB).fingerprint == open_pool(f"noise:{kind}:5000:0", RGB).fingerprint
    )
    assert open_pool(f"noise:{kind}:5000:4", RGB).fingerprint != pool.fingerprint


def test_noise_distributions() -> None:
    uniform = open_pool("noise:uniform:400:1", GRAY).to_array()
    gaussian = open_pool("noise:gaussian:400:1", GRAY).to_array()
    assert uniform.min() == 0.0 and uniform.max() == 1.0
    assert abs(uniform.mean() - 0.5) < 0.01 and abs(uniform.std() - 0.2887) < 0.01
    assert abs(gaussian.mean() - 0.5) < 0.01 and abs(gaussian.std() - 0.24) < 0.015  # clipping trims it
    counts = np.bincount((uniform * 255).round().astype(int).ravel(), minlength=256)
    assert counts.min() > 0.5 * counts.mean()  # every level drawn, none twice as rare as the mean


def test_a_million_noise_images_cost_no_memory() -> None:
    tracemalloc.start()
    try:
        pool = open_pool("noise:uniform:1000000:0", (3, 32, 32))
        head = pool.storage[:999_000]  # a slice is another lazy view
        last = pool[np.array([999_999])]
        fingerprint = pool.fingerprint
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert isinstance(head, LazyImages) and len(head) == 999_000 and last.shape == (1, 3, 32, 32)
    assert pool.nbytes == 0 and len(fingerprint) == 64
    assert peak < 20 << 20  # a float32 copy would be 12 GB, uint8 3 GB


# --- mixes ------------------------------------------------------------------------------------------


def _tagged(value: int, n: int) -> np.ndarray:
    """n uint8 images whose first pixel says which source they are and the second which row."""
    images = np.full((n, *GRAY), value, dtype=np.uint8)
    images[:, 0, 0, 1] = np.arange(n)
    return images


@pytest.fixture
def two_files(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, _tagged(10, 50))
    np.save(b, _tagged(200, 120))
    return a, b


def test_mix_composition_and_stable_keys(two_files: tuple[Path, Path]) -> None:
    a, b = two_files
    spec = f"mix:{a}@20+{b}@100:7"
    pool = open_pool(spec, GRAY)
    stored = np.asarray(pool.storage)
    assert len(pool) == 120 and pool.summary.kind == "mix" and stored.dtype == np.uint8
    sources = stored[:, 0, 0, 0]
    assert (sources == 10).sum() == 20 and (sources == 200).sum() == 100
    assert len({tuple(r) for r in stored[:, 0, 0, :2]}) == 120  # no image taken twice
    assert 0 < np.flatnonzero(sources == 10).mean() / 120 < 1  # shuffled, not in part order
    # the same spec, the same image at every index (what ledgers and resumed runs rely on)
    again = open_pool(spec, GRAY)
    assert np.array_equal(np.asarray(again.storage), stored) and again.fingerprint == pool.fingerprint
    assert np.array_equal(pool[np.array([119, 3])], stored[[119, 3]] / np.float32(255.0))
    other = open_pool(f"mix:{a}@20+{b}@100:8", GRAY)
    assert other.fingerprint != pool.fingerprint
    whole = open_pool(f"mix:{a}@all+noise:uniform:30@all", GRAY)
    assert len(whole) == 80 and (np.asarray(whole.storage)[:, 0, 0, 0] == 10).sum() == 50


def test_mix_of_datasets_with_noise() -> None:
    pool = open_pool("mix:mnist@300+fashion-mnist@600+noise:gaussian:1000@100", GRAY)
    assert len(pool) == 1000 and pool.summary.source.endswith(":0")
    assert pool.storage.nbytes < 20_000  # only the index map
    assert pool[np.arange(0, 1000, 97)].shape == (11, *GRAY)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("mix:", r"write mix:SPEC@COUNT\+SPEC@COUNT"),
        ("mix:mnist+fashion-mnist@10", r"part 'mnist' has no @COUNT"),
        ("mix:mnist@0", r"COUNT must be an integer >= 1, got '0'"),
        ("mix:mnist@ten", r"COUNT must be an integer >= 1, got 'ten'"),
        ("mix:mnist@10:-1", r"SEED must be an integer >= 0"),
        ("mix:mnist@70000", r"holds 60000 images, 70000 were asked for"),
        ("mix:imagenet@10", r"part 'imagenet': cannot open pool 'imagenet'"),
        ("noise:pink:10", r"unknown kind 'pink'"),
        ("noise:uniform", r"write noise:uniform:N or noise:gaussian:N"),
        ("noise:uniform:0", r"N must be a positive integer, got '0'"),
        ("noise:uniform:10:x", r"SEED must be a non-negative integer, got 'x'"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        open_pool(spec, GRAY)


def test_parsers_and_shape_rules() -> None:
    parts, seed = parse_mix("mix:mnist:test@10+noise:uniform:100:3@all:9")
    assert [(p.spec, p.count) for p in parts] == [
        ("mnist:test", 10),
        ("noise:uniform:100:3", None),
    ] and seed == 9
    assert parse_noise("noise:gaussian:12") == ("gaussian", 12, 0)
    with pytest.raises(DataError, match=r"needs the target's input shape"):
        open_pool("noise:uniform:10")
    assert open_pool("mix:mnist@5+noise:uniform:5@5").shape == GRAY  # the first part's shape is used
    with pytest.raises(
        DataError, match=r"part 'mnist': pool mnist:train holds .* \(1, 28, 28\); expected \(1, 8, 8\)"
    ):
        open_pool("mix:sklearn-digits@5+mnist@5")  # digits keep their 8x8 without a target shape


def test_a_mix_part_of_another_shape_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "rgb.npy", np.zeros((4, 3, 28, 28), np.uint8))
    with pytest.raises(
        DataError, match=r"rgb.npy@2'.*shape \(C, H, W\) = \(3, 28, 28\); expected \(1, 28, 28\)"
    ):
        open_pool(f"mix:mnist@2+{tmp_path / 'rgb.npy'}@2", GRAY)


# --- augmented views --------------------------------------------------------------------------------


def test_views_interleave_each_base_image_and_are_deterministic(two_files: tuple[Path, Path]) -> None:
    a, _ = two_files
    base = np.load(a)
    pool = open_pool(f"aug:raw,invert,rotate*2,crop.edges:{a}", GRAY)
    assert len(pool) == 5 * 50 and pool.summary.kind == "augmented" and pool.nbytes == 0
    stored = np.asarray(pool.storage)
    assert np.array_equal(stored[0::5], base) and np.array_equal(stored[1::5], 255 - base)
    assert not np.array_equal(stored[2::5], stored[3::5])  # two copies, two draws
    rows = np.array([249, 12, 3])
    assert np.array_equal(pool[rows], open_pool(f"aug:raw,invert,rotate*2,crop.edges:{a}", GRAY)[rows])
    assert np.array_equal(pool[10:13], pool[np.array([10, 11, 12])])
    reseeded = open_pool(f"aug:raw,invert,rotate*2,crop.edges,seed=1:{a}", GRAY)
    assert reseeded.fingerprint != pool.fingerprint and np.array_equal(
        np.asarray(reseeded.storage)[0::5], base
    )
    assert float(pool[np.arange(4, 250, 5)].max()) == 1.0  # edge maps are scaled to their maximum


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("aug:blur:mnist", r"unknown transform 'blur'; known: raw, invert"),
        ("aug:raw*0:mnist", r"COPIES must be an integer >= 1, got '0'"),
        ("aug:mnist", r"write aug:VIEWS:SPEC"),
        ("aug:raw:imagenet", r"base 'imagenet': cannot open pool"),
    ],
)
def test_bad_view_specs(spec: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        open_pool(spec, GRAY)


# --- a tiny steal through each new kind -------------------------------------------------------------


class BrightnessTarget:
    """A fixed 3-class target on any image (the third of [0, 1] its top half's mean is in); counts images."""

    def __init__(self) -> None:
        self.images = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.images += len(x)
        level = x[:, :, : x.shape[2] // 2].mean(axis=(1, 2, 3))
        logits = -((level[:, None] - np.array([0.2, 0.5, 0.8])[None]) ** 2) * 200
        e = np.exp(logits - logits.max(1, keepdims=True))
        return (e / e.sum(1, keepdims=True)).astype(np.float32)


def _stop_after_round_0(event: RoundEvent) -> None:
    if event.record.round == 0:
        raise KeyboardInterrupt


SMALL = (1, 16, 16)
SPECS = [
    "sklearn-digits",
    "noise:uniform:100000:1",
    "noise:gaussian:300",
    "mix:sklearn-digits@200+noise:uniform:500@300:2",
]


@pytest.mark.parametrize("spec", SPECS)
def test_tiny_steal_with_each_new_pool_resumes(spec: str, tmp_path: Path) -> None:
    settings: dict[str, Any] = {
        "budget": 60,
        "batch_size": 30,
        "strategy": "entropy",
        "fit": QUICK,
        "quiet": True,
    }
    with pytest.raises(KeyboardInterrupt):
        steal(
            CallableOracle(BrightnessTarget(), 3, input_shape=SMALL),
            spec,
            out=tmp_path,
            on_round=_stop_after_round_0,
            **settings,
        )
    target = BrightnessTarget()
    result = steal(CallableOracle(target, 3, input_shape=SMALL), spec, out=tmp_path, resume=True, **settings)
    assert result.queries_used == 60 and target.images == 30  # the same pool: round 0 was not bought again
    assert result.history[-1].train_size == 60


def test_resuming_with_another_noise_seed_is_refused(tmp_path: Path) -> None:
    settings: dict[str, Any] = {"budget": 60, "batch_size": 30, "fit": QUICK, "quiet": True}
    with pytest.raises(KeyboardInterrupt):
        steal(
            CallableOracle(BrightnessTarget(), 3, input_shape=SMALL),
            "noise:uniform:200:1",
            out=tmp_path,
            on_round=_stop_after_round_0,
            **settings,
        )
    with pytest.raises(
        ConfigError, match=r"noise:uniform:200:2 is not the pool this run bought its answers for"
    ):
        steal(
            CallableOracle(BrightnessTarget(), 3, input_shape=SMALL),
            "noise:uniform:200:2",
            out=tmp_path,
            resume=True,
            **settings,
        )
