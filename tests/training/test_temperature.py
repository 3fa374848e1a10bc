"""`FitConfig.temperature`: distillation from probability answers at temperature T (Hinton et al., 2015)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from activethief.errors import ConfigError
from activethief.training import FitConfig, fit
from activethief.training.fit import soft_cross_entropy
from activethief.training.targets import AUTO_SMOOTHING, smooth, soften


def test_soften_recovers_the_tempered_softmax_from_probabilities() -> None:
    logits = torch.tensor([[9.0, 1.0, -3.0, 0.5], [0.2, 0.1, 4.0, -8.0]])
    probs = F.softmax(logits, dim=1)
    for temperature in (0.5, 2.0, 4.0):
        assert torch.allclose(soften(probs, temperature), F.softmax(logits / temperature, dim=1), atol=1e-6)
    assert soften(probs, 1.0) is probs
    # higher temperatures lift the small probabilities
    assert soften(probs, 2.0)[0, 2] > 10 * probs[0, 2]


def test_soften_keeps_hard_labels_hard() -> None:
    hard = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert torch.equal(soften(hard, 3.0), hard)


def _model() -> nn.Module:
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return model


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_fit_trains_on_softened_answers_and_validates_on_the_answers(temperature: float) -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(32, 1, 4, 4, generator=gen)
    answers = F.softmax(3 * torch.randn(32, 3, generator=gen), dim=1)
    model = _model()
    with torch.no_grad():
        initial = model(x)
    cfg = FitConfig(epochs=1, batch_size=32, max_steps=1, val_fraction=0.0, temperature=temperature)
    result = fit(model, x, answers, config=cfg, seed=0, val=(x, answers))
    # the one step's loss (over the whole set, so its order does not matter): T^2 CE(z / T, p at T)
    expected = temperature**2 * soft_cross_entropy(initial / temperature, soften(answers, temperature))
    assert result.train_loss[0] == pytest.approx(float(expected), rel=1e-4)
    if temperature != 1.0:
        assert result.train_loss[0] != pytest.approx(float(soft_cross_entropy(initial, answers)), rel=1e-2)
    # early stopping measures the fit to the answers as they were given, at temperature 1
    with torch.no_grad():
        assert result.best_val_loss == pytest.approx(float(soft_cross_entropy(model(x), answers)), rel=1e-4)


def test_hard_answers_train_at_temperature_one_whatever_the_setting() -> None:
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(32, 1, 4, 4, generator=gen)
    indices = torch.randint(0, 3, (32,), generator=gen)
    labels = F.one_hot(indices, 3).float()
    model = _model()
    with torch.no_grad():
        initial = model(x)
    cfg = FitConfig(epochs=1, batch_size=32, max_steps=1, val_fraction=0.0, temperature=2.0)
    # a label-only API's one-hot rows: smoothed as usual, not tempered
    one_hot = fit(_model(), x, labels, config=cfg, seed=0)
    expected = soft_cross_entropy(initial, smooth(labels, AUTO_SMOOTHING))
    assert one_hot.train_loss[0] == pytest.approx(float(expected), rel=1e-4)
    # class indices (ground truth, training a target): neither
    given = fit(_model(), x, indices, config=cfg, seed=0)
    assert given.train_loss[0] == pytest.approx(float(soft_cross_entropy(initial, labels)), rel=1e-4)


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_a_temperature_that_is_not_positive_is_refused(temperature: float) -> None:
    with pytest.raises(ConfigError, match="temperature must be > 0"):
        FitConfig(temperature=temperature)
