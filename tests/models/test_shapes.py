"""Every architecture builds for any input shape; MNIST-shaped models are the ones they always were;
`auto` picks by shape; the residual nets split into features and a head."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from activethief import models
from activethief.errors import ModelError
from activethief.training import FitConfig, fit, predict_outputs

# SHA-256 of (key, weight bytes) over the state dict of build(arch, 10, seed=0) at (1, 28, 28), computed
# with the code before architectures took an input shape (torch 2.13 CPU): MNIST results must not move.
MNIST_WEIGHTS = {
    "cnn2": "aa1c3ab8f1100b83b9c0fea16c52d55a2a0c0f22a654f2bb9a9dc974dd32028d",
    "cnn2-wide": "c7bba55e386ea8ecf4586530979ea3082842b9903e6820109534a607dbce6536",
    "lenet": "9396b87da2f5793efa0105c895f02e41a7e52689ad03884a51b2fcb0b2ddc60e",
    "mlp": "9beb486809c80341026563af3f15ad8f2e0f8a107a470e63e7995dc9107b56f4",
}
CNN2_SEED_1_SEVEN_CLASSES = "df749fe26744e4d0d72d463eca188cc045f079ee00fd603273333c31f1211b07"

SHAPES = [(1, 28, 28), (3, 32, 32), (3, 8, 8), (1, 9, 13), (3, 11, 11), (3, 64, 48), (3, 224, 224)]


def weights_sha256(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("arch", sorted(MNIST_WEIGHTS))
def test_mnist_shaped_models_keep_their_exact_initial_weights(arch: str) -> None:
    assert weights_sha256(models.build(arch, 10, seed=0)) == MNIST_WEIGHTS[arch]
    assert weights_sha256(models.build(arch, 10, input_shape=(1, 28, 28), seed=0)) == MNIST_WEIGHTS[arch]


def test_cnn2_weights_follow_seed_and_class_count_as_before() -> None:
    assert weights_sha256(models.build("cnn2", 7, seed=1)) == CNN2_SEED_1_SEVEN_CLASSES


@pytest.mark.parametrize("arch", sorted(models.ARCHITECTURES))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_every_architecture_builds_for_every_shape(arch: str, shape: tuple[int, int, int]) -> None:
    model = models.build(arch, 5, input_shape=shape, seed=0).eval()
    x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        features, logits = models.features_and_logits(model, x)
        assert logits.shape == (2, 5) and features.ndim == 2 and features.shape[0] == 2
        assert torch.equal(logits, model(x))
    assert model.input_shape == shape


def test_dense_layers_stay_small_for_large_images() -> None:
    small = models.build("cnn2", 10, input_shape=(3, 32, 32))
    large = models.build("cnn2", 10, input_shape=(3, 224, 224))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(large) == count(small)  # pooled down to 8x8 before the dense layer
    mlp = models.build("mlp", 10, input_shape=(3, 224, 224))
    assert count(mlp) == count(models.build("mlp", 10, input_shape=(3, 32, 32)))


def test_residual_nets_are_classifiers_with_global_pooling() -> None:
    for arch in ("resnet8", "resnet14-wide"):
        model = models.build(arch, 10, input_shape=(3, 32, 32), seed=0)
        assert isinstance(model, models.Classifier)
        assert isinstance(model[-3], nn.AdaptiveAvgPool2d)
    small = sum(p.numel() for p in models.build("resnet8", 10, input_shape=(3, 32, 32)).parameters())
    wide = sum(p.numel() for p in models.build("resnet14-wide", 10, input_shape=(3, 32, 32)).parameters())
    assert wide > 5 * small  # the target variant is a different, larger net


def test_resnet_features_feed_the_streaming_pass() -> None:
    model = models.build("resnet8", 10, input_shape=(3, 32, 32), seed=0)
    x = np.random.default_rng(0).random((30, 3, 32, 32), dtype=np.float32)
    out = predict_outputs(model, x, features=True, batch_size=16)
    assert out.features is not None and out.features.shape == (30, 64)
    assert out.probs is not None and np.allclose(out.probs.sum(1), 1, atol=1e-5)


def test_resnet_learns_a_colour_rule() -> None:
    # Class = which of the three channels is brightest: trivial for a net that sees colour.
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    x = rng.random((300, 3, 16, 16), dtype=np.float32) * 0.5
    x[np.arange(300), labels] += 0.5
    model = models.build("resnet8", 3, input_shape=(3, 16, 16), seed=0)
    fit(model, x[:200], labels[:200], config=FitConfig(epochs=1, min_steps=60, val_fraction=0, batch_size=50))
    probs = predict_outputs(model, x[200:]).probs
    assert probs is not None and (probs.argmax(1) == labels[200:]).mean() > 0.9


def test_build_is_seeded_for_residual_nets() -> None:
    a = models.build("resnet8", 10, input_shape=(3, 32, 32), seed=3)
    b = models.build("resnet8", 10, input_shape=(3, 32, 32), seed=3)
    c = models.build("resnet8", 10, input_shape=(3, 32, 32), seed=4)
    assert weights_sha256(a) == weights_sha256(b) != weights_sha256(c)


def test_auto_picks_by_input_shape() -> None:
    assert models.resolve_arch("auto", (1, 28, 28)) == "cnn2"
    assert models.resolve_arch("auto", [1, 28, 28]) == "cnn2"  # as a JSON file stores it
    assert models.resolve_arch("auto", (3, 32, 32)) == models.RGB_DEFAULT == "resnet8"
    assert models.resolve_arch("auto", (1, 32, 32)) == "resnet8"
    assert models.resolve_arch("auto", (3, 28, 28)) == "resnet8"
    assert models.resolve_arch("lenet", (3, 32, 32)) == "lenet"  # other names pass through
    auto = models.build("auto", 10, input_shape=(1, 28, 28), seed=0)
    assert weights_sha256(auto) == MNIST_WEIGHTS["cnn2"]
    assert isinstance(models.build("auto", 10, input_shape=(3, 32, 32))[-1], nn.Linear)


def test_bad_shapes_and_names_are_clear() -> None:
    with pytest.raises(ModelError, match="at least 8x8"):
        models.build("cnn2", 10, input_shape=(1, 7, 28))
    with pytest.raises(ModelError, match="three positive integers"):
        models.build("cnn2", 10, input_shape=(28, 28))
    with pytest.raises(ModelError, match="three positive integers"):
        models.build("cnn2", 10, input_shape=(1, 0, 28))
    with pytest.raises(ModelError, match=r"unknown architecture 'resnet'.*auto, cnn2.*module:function"):
        models.build("resnet")
    with pytest.raises(ModelError, match="unknown architecture"):
        models.check_arch("vgg")
    models.check_arch("auto")
    models.check_arch("resnet8")


def test_save_records_the_real_input_shape(tmp_path: Path) -> None:
    model = models.build("resnet8", 4, input_shape=(3, 20, 24), seed=0)
    models.save(model, tmp_path / "m.pt", arch="resnet8", num_classes=4)
    loaded, meta = models.load(tmp_path / "m.pt")
    assert meta["input_shape"] == [3, 20, 24] and meta["arch"] == "resnet8"
    assert loaded.input_shape == (3, 20, 24)
    x = torch.rand(2, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(loaded(x), model.eval()(x))
    # An explicit shape wins; a plain module that does not say is MNIST-shaped (as every old file was).
    models.save(
        nn.Sequential(*models.build("mlp", 3, input_shape=(1, 8, 8))),
        tmp_path / "p.pt",
        arch="mlp",
        num_classes=3,
        input_shape=(1, 8, 8),
    )
    assert models.load(tmp_path / "p.pt")[1]["input_shape"] == [1, 8, 8]
    models.save(nn.Sequential(*models.build("mlp", 3)), tmp_path / "old.pt", arch="mlp", num_classes=3)
    assert models.load(tmp_path / "old.pt")[1]["input_shape"] == [1, 28, 28]


def test_a_file_saved_as_auto_loads_at_its_shape(tmp_path: Path) -> None:
    model = models.build("auto", 10, input_shape=(3, 32, 32), seed=0)
    models.save(model, tmp_path / "m.pt", arch="auto", num_classes=10)
    loaded, meta = models.load(tmp_path / "m.pt")
    assert weights_sha256(loaded) == weights_sha256(model) and meta["arch"] == "auto"
