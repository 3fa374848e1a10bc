"""Pools of any kind and shape through the loop: arrays, folders of PNGs and .npy files, uint8 and
memory-mapped storage read per batch (never converted whole), the pool's identity for resume, and the
shape checked against the target's at the boundary."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from activethief import CallableOracle, data, steal
from activethief.data import Pool
from activethief.errors import ConfigError
from activethief.oracle import Ledger
from activethief.steal import RoundEvent
from activethief.steal import loop as steal_loop
from activethief.training import FitConfig

QUICK = FitConfig(epochs=1, patience=1, batch_size=50, warmup_steps=2, min_steps=4)
RGB = (3, 32, 32)
GRAY = (1, 28, 28)


class PixelTarget:
    """A fixed 10-class target over any shape (a random linear map of 4x4-pooled pixels); counts images."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        c = shape[0]
        self.weights = np.random.default_rng(7).normal(size=(c * 16, 10)).astype(np.float32)
        self.shape, self.images, self.seen = shape, 0, np.zeros((0, *shape), np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        assert x.dtype == np.float32 and x.shape[1:] == self.shape and x.min() >= 0.0 and x.max() <= 1.0
        self.images += len(x)
        self.seen = np.concatenate([self.seen, x])
        c, h, w = self.shape
        pooled = x[:, :, : h // 4 * 4, : w // 4 * 4].reshape(len(x), c, 4, h // 4, 4, w // 4).mean((3, 5))
        logits = 8.0 * (pooled.reshape(len(x), -1) - 0.5) @ self.weights
        e = np.exp(logits - logits.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)


def uint8_images(n: int, shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """[n, C, H, W] uint8 images: smooth random blobs, so a target's classes are not all one."""
    rng = np.random.default_rng(seed)
    c, h, w = shape
    low = rng.integers(0, 256, (n, c, 4, 4)).astype(np.float32)
    big = np.kron(low, np.ones((1, 1, h // 4 + 1, w // 4 + 1), np.float32))[:, :, :h, :w]
    return np.clip(big + rng.normal(0, 8, big.shape), 0, 255).astype(np.uint8)


def write_folder(folder: Path, images: np.ndarray) -> None:
    """One PNG per image, in nested folders, named so the sorted order is the array's order."""
    for i, image in enumerate(images):
        path = folder / f"part{i // 10:02d}" / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
        Image.fromarray(pixels).save(path)


def run_settings(**overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = dict(
        budget=60, batch_size=30, strategy="entropy", seed=0, quiet=True, fit=QUICK, substitute="cnn2"
    )
    return {**settings, **overrides}


@pytest.mark.parametrize("kind", ["array", "folder", "npy"])
def test_an_rgb_steal_runs_from_an_array_a_png_folder_and_an_npy(tmp_path: Path, kind: str) -> None:
    images = uint8_images(120, RGB)
    source: Any = images.transpose(0, 2, 3, 1).copy()  # an in-memory NHWC uint8 array
    if kind == "folder":
        write_folder(tmp_path / "pool", images)
        source = tmp_path / "pool"
    elif kind == "npy":
        np.save(tmp_path / "pool.npy", images)
        source = str(tmp_path / "pool.npy")
    target = PixelTarget(RGB)
    oracle = CallableOracle(target, 10, input_shape=RGB)
    result = steal(oracle, source, **run_settings())
    assert result.queries_used == 60 == target.images and result.stopped_by == "budget"
    assert [r.selected for r in result.history] == [30, 30, 0]
    keys, _, rounds = oracle.ledger.all_answers()
    asked = keys[np.lexsort((keys, rounds))]  # the order they were bought: by round, then pool index
    # The target saw exactly the pool's pixels at the keys bought, as float32 x / 255.
    assert np.allclose(target.seen, images[asked] / 255.0, atol=1e-6)
    assert next(result.substitute.parameters()).shape[1] == 3  # an RGB substitute


def test_a_memory_mapped_pool_is_read_per_batch_never_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    np.save(tmp_path / "pool.npy", uint8_images(1200, GRAY))
    reads: list[tuple[int, type]] = []
    original = Pool.__getitem__

    def recording(self: Pool, indices: Any) -> np.ndarray:
        out = original(self, indices)
        reads.append((len(out), type(self.storage)))
        return out

    def refuse(self: Pool) -> np.ndarray:
        raise AssertionError("the loop converted the whole pool")

    monkeypatch.setattr(Pool, "__getitem__", recording)
    monkeypatch.setattr(Pool, "to_array", refuse)
    oracle = CallableOracle(PixelTarget(GRAY), 10)
    result = steal(oracle, tmp_path / "pool.npy", **run_settings(strategy="entropy+kcenter"))
    assert result.queries_used == 60
    assert reads and all(storage is np.memmap for _, storage in reads)
    assert max(rows for rows, _ in reads) <= 512  # scoring batches, purchases, training sets: never 1,200


def test_dfal_reads_only_its_candidates_from_the_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Pool, "to_array", lambda self: pytest.fail("the loop converted the whole pool"))
    oracle = CallableOracle(PixelTarget(GRAY), 10)
    result = steal(oracle, uint8_images(200, GRAY), **run_settings(strategy="dfal", budget=40, batch_size=20))
    assert result.queries_used == 40


def test_a_pixel_seeder_gets_the_whole_pool_as_floats() -> None:
    images = uint8_images(150, GRAY)
    oracle = CallableOracle(PixelTarget(GRAY), 10)
    result = steal(oracle, images, **run_settings(seeding="pca-kmeans:5", budget=30, batch_size=30))
    assert result.queries_used == 30


def test_a_dataset_pool_gives_the_values_and_purchases_of_its_float_array(mnist_small: object) -> None:
    x = data.load("mnist", "train")[0][:600]
    pool = steal_loop.first_images(data.open_pool("mnist", GRAY), 600)
    assert pool.storage.dtype == np.uint8 and pool.summary.source == "mnist:train[:600]"
    # The fingerprint runs have always bound (float32 bytes) is kept for dataset pools.
    assert steal_loop.pool_fingerprint(pool) == steal_loop.fingerprint(x)
    purchases = []
    for source in (x, pool):  # entropy: the purchases follow the substitute trained on what it read
        oracle = CallableOracle(PixelTarget(GRAY), 10)
        steal(oracle, source, **run_settings())
        purchases.append(oracle.answered()[0])
    assert np.array_equal(purchases[0], purchases[1])


def die_after_round(round_: int) -> Callable[[RoundEvent], None]:
    def hook(event: RoundEvent) -> None:
        if event.record.round == round_:
            raise KeyboardInterrupt

    return hook


def test_resuming_with_a_changed_folder_is_refused(tmp_path: Path) -> None:
    images = uint8_images(80, GRAY)
    folder, out = tmp_path / "pool", tmp_path / "run"
    write_folder(folder, images)
    settings = run_settings(budget=40, batch_size=20)
    with pytest.raises(KeyboardInterrupt):
        steal(CallableOracle(PixelTarget(GRAY), 10), folder, out=out, on_round=die_after_round(0), **settings)
    changed = images.copy()
    changed[5] = 255 - changed[5]
    write_folder(folder, changed)
    with pytest.raises(ConfigError, match=rf"pool {folder}.*not the pool this run bought.*changed"):
        steal(CallableOracle(PixelTarget(GRAY), 10), folder, out=out, resume=True, **settings)
    write_folder(folder, images)  # the same pixels again: the run resumes
    target = PixelTarget(GRAY)
    result = steal(CallableOracle(target, 10), folder, out=out, resume=True, **settings)
    assert result.queries_used == 40 and target.images == 20  # round 0's 20 were not bought again


def test_a_float_array_run_binds_the_fingerprint_it_always_did(tmp_path: Path) -> None:
    x = uint8_images(100, GRAY).astype(np.float32) / np.float32(255.0)
    steal(CallableOracle(PixelTarget(GRAY), 10), x, out=tmp_path / "run", **run_settings(budget=30))
    ledger = Ledger(tmp_path / "run" / "ledger.sqlite")
    assert ledger.get_meta("pool") == steal_loop.fingerprint(x)
    assert ledger.get_meta("pool_source") == "<array>"
    ledger.close()


def test_pools_of_another_shape_are_refused_naming_both_shapes(tmp_path: Path) -> None:
    np.save(tmp_path / "rgb.npy", uint8_images(20, RGB))
    oracle = CallableOracle(PixelTarget(GRAY), 10)
    for source in (str(tmp_path / "rgb.npy"), uint8_images(20, RGB)):
        with pytest.raises(ConfigError, match=r"\(3, 32, 32\).*\(1, 28, 28\)"):
            steal(oracle, source, **run_settings())
    rgb_oracle = CallableOracle(PixelTarget(RGB), 10, input_shape=RGB)
    with pytest.raises(ConfigError, match=r"\(1, 28, 28\).*\(3, 32, 32\)"):
        steal(rgb_oracle, np.zeros((20, 1, 28, 28), np.float32), **run_settings())
    assert oracle.used == rgb_oracle.used == 0
