"""Answers as training targets: top-k and rounded remainders, label smoothing of hard answers, a label-only
steal (`training.targets`, `oracle.answers_to_targets`, `FitConfig.label_smoothing`)."""

from __future__ import annotations

import importlib
from dataclasses import asdict

import numpy as np
import pytest
import torch

from activethief import models, steal
from activethief.errors import ConfigError
from activethief.oracle import ModelOracle, OutputMode, answers_to_targets
from activethief.steal import loop as steal_loop
from activethief.training import FitConfig, fit
from activethief.training.targets import (
    AUTO_SMOOTHING,
    all_one_hot,
    smooth,
    smoothing_amount,
    spread_remainder,
)

fit_module = importlib.import_module("activethief.training.fit")  # the package exports the function as `fit`
PROBS = np.array([[0.05, 0.6, 0.3, 0.05], [0.5, 0.2, 0.29, 0.01]], dtype=np.float32)


def test_topk_remainder_goes_to_the_unseen_classes() -> None:
    top1 = answers_to_targets(OutputMode.parse("topk:1").apply(PROBS))
    assert np.allclose(top1, [[0.4 / 3, 0.6, 0.4 / 3, 0.4 / 3], [0.5, 0.5 / 3, 0.5 / 3, 0.5 / 3]])
    top2 = answers_to_targets(OutputMode.parse("topk:2").apply(PROBS))
    assert np.allclose(top2, [[0.05, 0.6, 0.3, 0.05], [0.5, 0.105, 0.29, 0.105]])
    assert np.allclose(answers_to_targets(PROBS), PROBS)  # full rows stay as they are


def test_rounded_rows_that_sum_to_zero_above_or_below_one() -> None:
    rounded = np.array(
        [[0.0, 0.0, 0.0, 0.0], [0.1, 0.6, 0.3, 0.1], [0.0, 0.6, 0.3, 0.0], [0.2, 0.2, 0.2, 0.2]],
        dtype=np.float32,
    )
    targets = spread_remainder(rounded)
    assert np.allclose(targets.sum(1), 1) and targets.dtype == np.float32
    assert np.allclose(targets[0], 0.25)  # a row of zeros reveals nothing: uniform, not class 0
    assert np.allclose(targets[1], np.array([0.1, 0.6, 0.3, 0.1]) / 1.1)  # above one: renormalised
    assert np.allclose(targets[2], [0.05, 0.6, 0.3, 0.05])  # below one: the rest to the zeros
    assert np.allclose(targets[3], 0.25)  # below one, no zero entry: renormalised
    assert np.allclose(spread_remainder(np.array([[-0.1, 1.0]])), [[0.0, 1.0]])  # negatives clipped
    assert np.allclose(answers_to_targets(OutputMode.parse("round:0").apply(PROBS))[1], 0.25)
    with pytest.raises(ConfigError, match="rows"):
        spread_remainder(np.zeros(4))


def test_label_answers_stay_one_hot_and_smooth_by_the_amount() -> None:
    hard = torch.from_numpy(answers_to_targets(OutputMode.parse("label").apply(PROBS)))
    assert all_one_hot(hard) and not all_one_hot(torch.from_numpy(PROBS))
    assert not all_one_hot(torch.tensor([[0.5, 0.5, 0.0, 0.0]]))
    smoothed = smooth(hard, 0.2)
    assert torch.allclose(smoothed[0], torch.tensor([0.05, 0.85, 0.05, 0.05]))
    assert torch.allclose(smoothed.sum(1), torch.ones(2))
    assert smooth(hard, 0.0) is hard
    for bad in (-0.1, 1.0):
        with pytest.raises(ConfigError, match="label smoothing"):
            smooth(hard, bad)


def test_the_automatic_amount_applies_to_hard_answers_only() -> None:
    hard = torch.eye(4)[[1, 0, 2]]
    assert smoothing_amount(2, hard, None) == AUTO_SMOOTHING > 0  # a label-only API's answers
    assert smoothing_amount(2, torch.from_numpy(PROBS), None) == 0.0  # soft answers
    assert smoothing_amount(1, hard, None) == 0.0  # class indices: ground truth (training a target)
    assert smoothing_amount(2, hard, 0.0) == 0.0  # switched off
    assert smoothing_amount(1, hard, 0.3) == 0.3  # an explicit amount applies to any targets


def test_fit_config_label_smoothing_is_validated_and_round_trips() -> None:
    config = FitConfig(label_smoothing=0.05)
    assert FitConfig.from_dict(asdict(config)) == config
    assert FitConfig.from_dict({k: v for k, v in asdict(FitConfig()).items() if k != "label_smoothing"}) == (
        FitConfig()
    )
    for bad in (-0.1, 1.0):
        with pytest.raises(ConfigError, match="label_smoothing"):
            FitConfig(label_smoothing=bad)


def _smoothing_seen(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    amounts: list[float] = []
    real = fit_module.smooth

    def spy(soft: torch.Tensor, amount: float) -> torch.Tensor:
        amounts.append(amount)
        return real(soft, amount)

    monkeypatch.setattr(fit_module, "smooth", spy)
    return amounts


@pytest.mark.parametrize(
    ("setting", "want"), [(None, AUTO_SMOOTHING), (0.0, 0.0), (0.3, 0.3)], ids=["auto", "off", "tuned"]
)
def test_fit_smooths_one_hot_rows_as_configured(
    monkeypatch: pytest.MonkeyPatch, setting: float | None, want: float
) -> None:
    amounts = _smoothing_seen(monkeypatch)
    x = np.random.default_rng(0).random((40, 1, 28, 28), dtype=np.float32)
    labels = np.arange(40) % 10
    config = FitConfig(epochs=1, val_fraction=0.0, label_smoothing=setting)
    fit(models.build("mlp", 10, seed=0), x, np.eye(10, dtype=np.float32)[labels], config=config)
    fit(models.build("mlp", 10, seed=0), x, labels, config=config)  # indices: smoothed only when asked
    assert amounts == [want, 0.0 if setting is None else want]


def test_smoothing_caps_the_substitute_confidence() -> None:
    """What smoothing does to the model: trained to convergence, it is about 1 - amount + amount / C sure."""
    x = np.random.default_rng(1).random((30, 1, 28, 28), dtype=np.float32)
    onehot = np.eye(10, dtype=np.float32)[np.arange(30) % 10]
    sure = {}
    for amount in (0.0, 0.3):
        model = models.build("mlp", 10, seed=0)
        config = FitConfig(epochs=150, batch_size=30, val_fraction=0.0, label_smoothing=amount)
        fit(model, x, onehot, config=config)
        with torch.no_grad():
            sure[amount] = float(torch.softmax(model(torch.from_numpy(x)), 1).max(1).values.mean())
    assert sure[0.0] > 0.97 and 0.6 < sure[0.3] < 0.85


def test_a_tiny_label_only_steal_trains_on_smoothed_answers(
    monkeypatch: pytest.MonkeyPatch, mnist_small: tuple[np.ndarray, ...]
) -> None:
    x, y, xt, yt = mnist_small
    target = models.build("mlp", 10, seed=0)
    fit(target, x[:1000], y[:1000], config=FitConfig(epochs=2, val_fraction=0.0))
    amounts = _smoothing_seen(monkeypatch)
    oracle = ModelOracle(target, mode="label")
    fast = FitConfig(epochs=2, patience=1, batch_size=50, warmup_steps=2)
    result = steal(
        oracle, x[:600], budget=150, batch_size=50, test=(xt[:200], yt[:200]), quiet=True, fit=fast
    )
    assert result.queries_used == 150 and [r.train_size for r in result.history] == [0, 50, 100, 150]
    assert amounts == [AUTO_SMOOTHING] * 3  # every round's answers were one-hot, each round smoothed
    assert result.history[-1].agreement is not None and result.history[-1].agreement > 0.3
    assert steal_loop.answers_to_targets is answers_to_targets  # the loop turns answers into targets here
