"""`--device auto|cpu|cuda`: names resolve, `cuda` without a GPU is a clear error at config time, and
fit/predict put each batch on the model's device (tested on the CPU; on a GPU when one is present)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from activethief import models
from activethief.errors import ConfigError
from activethief.steal import StealConfig
from activethief.training import FitConfig, fit, predict_outputs
from activethief.training.predict import model_device, to_device


def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_device_names(monkeypatch: pytest.MonkeyPatch) -> None:
    assert models.resolve_device("cpu") == torch.device("cpu")
    no_gpu(monkeypatch)
    assert models.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match=r"unknown device 'tpu'"):
        models.resolve_device("tpu")
    with pytest.raises(ConfigError, match=r"unknown device 'cuda:x'"):
        models.resolve_device("cuda:x")


def test_cuda_without_a_gpu_is_a_clear_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    no_gpu(monkeypatch)
    with pytest.raises(
        ConfigError, match=r"StealConfig.device: device 'cuda' asked for, but torch sees no CUDA"
    ):
        StealConfig(budget=10, device="cuda")
    with pytest.raises(ConfigError, match=r"use --device cpu or auto"):
        models.build("cnn2", 10, device="cuda:0")
    assert StealConfig(budget=10).device == "auto"
    assert StealConfig(budget=10, device="cpu").to_dict()["device"] == "cpu"
    with pytest.raises(ConfigError, match=r"StealConfig.device: unknown device 'gpu'"):
        StealConfig(budget=10, device="gpu")


def test_auto_means_the_gpu_when_there_is_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert models.resolve_device("auto") == torch.device("cuda")


def test_batches_stay_where_they_are_on_the_cpu() -> None:
    x = torch.rand(3, 1, 8, 8)
    assert to_device(x, torch.device("cpu")) is x  # no copy on the CPU
    assert model_device(models.build("mlp", 2, input_shape=(1, 8, 8))) == torch.device("cpu")
    assert model_device(nn.ReLU()) == torch.device("cpu")  # a module without weights


def _train_and_score(device: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.random((64, 3, 12, 12), dtype=np.float32)
    y = rng.integers(0, 3, 64)
    model = models.build("resnet8", 3, input_shape=(3, 12, 12), seed=0, device=device)
    fit(model, x, y, config=FitConfig(epochs=1, min_steps=4, val_fraction=0.25, batch_size=16, augment=1))
    assert model_device(model).type == torch.device(device).type
    out = predict_outputs(model, x, features=True, batch_size=20)
    assert out.probs is not None and out.features is not None
    return out.probs, out.features


def test_cpu_training_is_reproducible_on_the_explicit_device() -> None:
    a, b = _train_and_score("cpu"), _train_and_score("cpu")
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fit_and_predict_run_on_the_gpu() -> None:
    probs, features = _train_and_score("cuda")
    assert probs.shape == (64, 3) and features.shape == (64, 64)
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
