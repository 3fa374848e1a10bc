"""Architectures, the model file format, and training: determinism, soft labels, beating chance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from activethief import models
from activethief.errors import ConfigError, ModelError
from activethief.training import FitConfig, accuracy, fit, predict_proba, random_shift, to_soft_targets


@pytest.mark.parametrize("arch", sorted(models.ARCHITECTURES))
def test_architectures_map_images_to_logits(arch: str) -> None:
    model = models.build(arch, 10, seed=0)
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_build_is_seeded_without_global_state() -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    a, b = models.build("cnn2", seed=5), models.build("cnn2", seed=5)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(1), before)  # build(seed=...) did not disturb the global generator
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_save_load_roundtrip(tmp_path: Path) -> None:
    model = models.build("lenet", 10, seed=1)
    models.save(model, tmp_path / "m.pt", arch="lenet", num_classes=10, dataset="mnist", test_accuracy=0.5)
    loaded, meta = models.load(tmp_path / "m.pt")
    assert meta["arch"] == "lenet" and meta["dataset"] == "mnist" and meta["input_shape"] == [1, 28, 28]
    assert not loaded.training
    x = torch.rand(2, 1, 28, 28)
    assert torch.allclose(loaded(x), model.eval()(x))


def test_bad_model_files(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        models.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a readable model file"):
        models.load(tmp_path / "junk.pt")
    with pytest.raises(ModelError, match="unknown architecture"):
        models.build("resnet")


def test_soft_targets() -> None:
    hard = to_soft_targets(np.array([2, 0]), 3)
    assert torch.equal(hard, torch.tensor([[0.0, 0, 1], [1, 0, 0]]))
    soft = to_soft_targets(np.array([[0.0, 2.0, 2.0]]), 3)
    assert torch.allclose(soft, torch.tensor([[0.0, 0.5, 0.5]]))
    with pytest.raises(ConfigError):
        to_soft_targets(np.array([3]), 3)
    with pytest.raises(ConfigError):
        to_soft_targets(np.zeros((1, 3)), 3)


def test_random_shift_keeps_content_and_is_seeded() -> None:
    x = torch.zeros(4, 1, 28, 28)
    x[:, :, 14, 14] = 1
    a = random_shift(x, 2, torch.Generator().manual_seed(0))
    b = random_shift(x, 2, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and torch.all(a.sum((1, 2, 3)) == 1)


def test_training_is_deterministic(mnist_small: tuple[np.ndarray, ...]) -> None:
    x, y = mnist_small[0][:500], mnist_small[1][:500]
    config = FitConfig(epochs=2, augment=1)
    weights = []
    for _ in range(2):
        model = models.build("cnn2", seed=0)
        fit(model, x, y, config=config, seed=3)
        weights.append(torch.cat([p.flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])


def test_small_slice_beats_chance_with_soft_and_hard_labels(mnist_small: tuple[np.ndarray, ...]) -> None:
    x, y, xt, yt = mnist_small
    config = FitConfig(epochs=4, patience=2)
    hard = models.build("cnn2", seed=0)
    result = fit(hard, x, y, config=config, seed=0)
    assert result.best_val_loss is not None and result.val_agreement is not None
    assert accuracy(hard, xt, yt) > 0.85  # chance is 0.10
    soft_labels = predict_proba(hard, x)
    student = models.build("mlp", seed=1)
    fit(student, x, soft_labels, config=config, seed=0)
    agreement = (predict_proba(student, xt).argmax(1) == predict_proba(hard, xt).argmax(1)).mean()
    assert agreement > 0.8


def test_early_stopping_restores_best(mnist_small: tuple[np.ndarray, ...]) -> None:
    x, y = mnist_small[0][:400], mnist_small[1][:400]
    model = models.build("mlp", seed=0)
    result = fit(model, x, y, config=FitConfig(epochs=40, patience=2, lr=3e-3), seed=0)
    assert result.epochs < 40
    assert result.best_epoch == int(np.argmin(result.val_loss)) + 1


def test_warm_start(mnist_small: tuple[np.ndarray, ...]) -> None:
    x, y, xt, yt = mnist_small
    base = models.build("cnn2", seed=0)
    fit(base, x, y, config=FitConfig(epochs=2), seed=0)
    warm = models.build("cnn2", seed=9)
    fit(
        warm,
        x[:100],
        y[:100],
        config=FitConfig(epochs=1, val_fraction=0),
        seed=0,
        init_state=base.state_dict(),
    )
    assert accuracy(warm, xt, yt) > 0.8


def test_metadata_of_any_type_stays_loadable(tmp_path: Path) -> None:
    models.save(models.build("mlp"), tmp_path / "m.pt", arch="mlp", num_classes=10, torch=torch.__version__)
    assert models.load(tmp_path / "m.pt")[1]["torch"] == str(torch.__version__)


def test_max_steps_caps_training_mid_epoch(mnist_small: tuple[np.ndarray, ...]) -> None:
    x, y = mnist_small[0][:1000], mnist_small[1][:1000]
    capped = fit(models.build("mlp", seed=0), x, y, config=FitConfig(epochs=5, max_steps=10), seed=0)
    assert capped.steps == 10 and capped.epochs == 2  # 8 steps per epoch of 900 images at 128
    exact = fit(
        models.build("mlp", seed=0), x[:200], y[:200], config=FitConfig(min_steps=25, max_steps=25), seed=0
    )
    assert exact.steps == 25  # min_steps == max_steps trains exactly that many steps


def test_bad_training_settings_are_named() -> None:
    with pytest.raises(ConfigError, match="max_steps"):
        FitConfig(min_steps=100, max_steps=50)
    with pytest.raises(ConfigError, match="warm_steps"):
        FitConfig(warm_steps=-1)
    with pytest.raises(ConfigError, match="batch_size"):
        FitConfig(batch_size=0)


def test_a_model_stays_trainable_after_predicting(mnist_small: tuple[np.ndarray, ...]) -> None:
    x, y = mnist_small[0][:64], mnist_small[1][:64]
    model = models.build("cnn2", seed=0)
    predict_proba(model, x)  # switches the weights' layout; must not leave inference-only tensors
    loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y).long())
    loss.backward()  # type: ignore[no-untyped-call]
    assert all(p.grad is not None for p in model.parameters())
