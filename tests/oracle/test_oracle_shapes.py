"""Targets of any input shape: images checked once at the oracle, logits or probabilities, normalisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from activethief import CallableOracle, models
from activethief.errors import OracleError
from activethief.oracle import ModelOracle, check_images

RGB = (3, 32, 32)


class Recorder:
    """A 4-class target over any shape: logits from per-channel means; remembers what it was shown."""

    def __init__(self, *, probs: bool = True) -> None:
        self.probs, self.seen = probs, np.zeros(0, np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.seen = x.copy()
        means = x.reshape(len(x), x.shape[1], -1).mean(2)
        logits = np.concatenate([means * 3.0, -means[:, :1]], 1)[:, :4]
        logits = np.pad(logits, ((0, 0), (0, 4 - logits.shape[1])))
        if not self.probs:
            return logits
        e = np.exp(logits - logits.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)


def rgb_images(n: int) -> np.ndarray:
    return np.random.default_rng(0).random((n, *RGB), dtype=np.float32)


def test_check_images_names_expected_and_given_shapes() -> None:
    assert check_images(rgb_images(2), RGB).shape == (2, *RGB)
    assert check_images(np.zeros((2, 28, 28), np.float32), (1, 28, 28)).shape == (2, 1, 28, 28)
    with pytest.raises(OracleError, match=r"\[n, 3, 32, 32\].*got shape \[2, 32, 32\]"):
        check_images(np.zeros((2, 32, 32), np.float32), RGB)  # [n, H, W] only when C = 1
    with pytest.raises(OracleError, match=r"\[n, 1, 28, 28\].*got shape \[2, 3, 32, 32\]"):
        check_images(rgb_images(2), (1, 28, 28))
    with pytest.raises(OracleError, match=r"\[0, 1\]"):
        check_images(rgb_images(2) * 255, RGB)


def test_an_rgb_callable_answers_rgb_images_and_refuses_others() -> None:
    target = Recorder()
    oracle = CallableOracle(target, 4, input_shape=RGB)
    assert oracle.input_shape == RGB
    answers = oracle.query(rgb_images(5), keys=np.arange(5))
    assert answers.shape == (5, 4) and np.allclose(answers.sum(1), 1.0)
    assert target.seen.shape == (5, *RGB)
    with pytest.raises(OracleError, match=r"\(C, H, W\) = \(3, 32, 32\); got shape \[2, 1, 28, 28\]"):
        oracle.query(np.zeros((2, 1, 28, 28), np.float32))
    assert oracle.used == 5  # the refused request cost nothing


def test_callable_default_shape_is_mnist_and_bad_shapes_are_refused() -> None:
    assert CallableOracle(Recorder(), 4).input_shape == (1, 28, 28)
    for shape in [(2, 32, 32), (3, 32), (3, 0, 32)]:
        with pytest.raises(OracleError, match="input_shape"):
            CallableOracle(Recorder(), 4, input_shape=shape)


def test_logits_get_one_softmax_and_probs_pass_unchanged() -> None:
    x = rgb_images(6)
    logits = Recorder(probs=False)(x)
    from_logits = CallableOracle(Recorder(probs=False), 4, input_shape=RGB, returns="logits").query(x)
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    assert np.allclose(from_logits, expected, atol=1e-6)
    probs = Recorder()(x)
    passed = CallableOracle(Recorder(), 4, input_shape=RGB, returns="probs").query(x)
    assert np.array_equal(passed, probs.astype(np.float32))  # no second softmax


def test_logits_declared_as_probs_are_refused_clearly() -> None:
    oracle = CallableOracle(Recorder(probs=False), 4, input_shape=RGB)  # returns="probs" by default
    with pytest.raises(OracleError, match=r"look like logits.*returns='logits'"):
        oracle.query(rgb_images(3))
    with pytest.raises(OracleError, match="returns must be"):
        CallableOracle(Recorder(), 4, input_shape=RGB, returns="softmax")  # type: ignore[arg-type]


def test_truncated_top_answers_still_count_as_probabilities() -> None:
    top1 = CallableOracle(lambda x: np.tile([[0.7, 0.0, 0.0]], (len(x), 1)), 3)
    assert np.allclose(top1.query(np.zeros((2, 1, 28, 28), np.float32)), [[0.7, 0, 0]] * 2)


def test_normalisation_is_applied_per_channel_before_the_target() -> None:
    target = Recorder()
    mean, std = (0.5, 0.25, 0.0), (0.5, 0.25, 2.0)
    oracle = CallableOracle(target, 4, input_shape=RGB, normalise=(mean, std))
    x = rgb_images(3)
    oracle.query(x)
    for c in range(3):
        assert np.allclose(target.seen[:, c], (x[:, c] - mean[c]) / std[c], atol=1e-6)
    with pytest.raises(OracleError, match="normalise mean must be 1 or 3"):
        CallableOracle(Recorder(), 4, input_shape=RGB, normalise=((0.5, 0.5), (1.0, 1.0)))
    with pytest.raises(OracleError, match="std must be positive"):
        CallableOracle(Recorder(), 4, input_shape=RGB, normalise=((0.5,), (0.0,)))


class TinyRGB(nn.Module):
    """A 3-channel module of any size (global pooling), optionally ending in a softmax."""

    def __init__(self, softmax: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.head, self.softmax = nn.Conv2d(3, 4, 3), nn.Linear(4, 5), softmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.head(self.conv(x).mean((2, 3)))
        return z.softmax(1) if self.softmax else z


def test_module_targets_take_their_input_shape_and_output_kind() -> None:
    x = np.random.default_rng(1).random((4, 3, 16, 16), dtype=np.float32)
    logits_oracle = ModelOracle(TinyRGB(), input_shape=(3, 16, 16))
    probs_oracle = ModelOracle(TinyRGB(softmax=True), input_shape=(3, 16, 16), returns="probs")
    a, b = logits_oracle.query(x), probs_oracle.query(x)
    assert logits_oracle.input_shape == (3, 16, 16) and np.allclose(a.sum(1), 1.0)
    assert np.allclose(a, b, atol=1e-5)  # softmax once on either side
    with pytest.raises(OracleError, match=r"\(C, H, W\) = \(3, 16, 16\)"):
        logits_oracle.query(rgb_images(2))
    assert ModelOracle(TinyRGB()).input_shape == (1, 28, 28)  # a module's default, as before


def test_a_model_file_declares_its_input_shape(tmp_path: Path) -> None:
    path = tmp_path / "target.pt"
    models.save(models.build("cnn2", 10, seed=0), path, arch="cnn2", num_classes=10)
    oracle = ModelOracle(path)
    assert oracle.input_shape == tuple(oracle.metadata["input_shape"]) == (1, 28, 28)
    with pytest.raises(OracleError, match=r"declares input shape.*\(1, 28, 28\).*\(3, 32, 32\)"):
        ModelOracle(path, input_shape=RGB)
