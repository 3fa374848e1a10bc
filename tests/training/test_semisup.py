"""Semi-supervised training: the unlabelled loss's formula, its settings, and one fit on a small slice."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from activethief import models
from activethief.errors import ConfigError
from activethief.training import FitConfig, SemiConfig, accuracy, fit
from activethief.training.semisup import unlabelled_loss


class _Fixed(nn.Module):
    """A 'model' whose logits are a fixed function of the mean pixel: confident for bright images."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(20.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(m), self.scale * m], 1)


def test_no_image_is_a_target_above_full_confidence() -> None:
    pool = torch.rand(50, 1, 8, 8)
    loss, confident = unlabelled_loss(
        _Fixed(),
        pool,
        20,
        SemiConfig(threshold=1.0),
        torch.Generator().manual_seed(0),
        max_shift=0,
        hflip=False,
    )
    assert confident == 0.0 and float(loss.detach()) == 0.0


def test_pseudo_loss_is_cross_entropy_on_confident_images_only() -> None:
    # Half the pool bright (confidently class 1), half black (50/50 logits: never confident).
    pool = torch.cat([torch.ones(10, 1, 4, 4), torch.zeros(10, 1, 4, 4)])
    model = _Fixed()
    gen = torch.Generator().manual_seed(0)
    rows = torch.randint(0, 20, (40,), generator=torch.Generator().manual_seed(0))
    loss, confident = unlabelled_loss(
        model, pool, 40, SemiConfig(method="pseudo", threshold=0.9), gen, max_shift=0, hflip=False
    )
    bright = rows < 10
    assert confident == pytest.approx(float(bright.float().mean()))
    expected = F.cross_entropy(model(torch.ones(1, 1, 4, 4)), torch.tensor([1])) * bright.float().mean()
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    loss.backward()  # type: ignore[no-untyped-call]
    assert model.scale.grad is not None  # the strong/weak view's loss trains the model


@pytest.mark.parametrize(
    "settings",
    [{"method": "mixmatch"}, {"threshold": 1.5}, {"weight": -1.0}, {"ratio": 0}, {"ratio": True}],
)
def test_bad_settings_are_refused(settings: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="semi-supervised"):
        SemiConfig(**settings)  # type: ignore[arg-type]


def test_fit_needs_the_unlabelled_images() -> None:
    model = models.build("cnn2", seed=0)
    with pytest.raises(ConfigError, match="unlabelled"):
        fit(model, np.zeros((4, 1, 28, 28), np.float32), np.arange(4), config=FitConfig(semi=SemiConfig()))


def test_fit_config_round_trips_through_a_dict() -> None:
    from dataclasses import asdict

    config = FitConfig(min_steps=7, semi=SemiConfig(method="pseudo", ratio=2))
    assert FitConfig.from_dict(asdict(config)) == config
    assert FitConfig.from_dict(asdict(FitConfig())) == FitConfig()


def test_a_semi_supervised_fit_on_a_small_slice(
    mnist_small: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    x, y, xt, yt = mnist_small
    config = FitConfig(
        epochs=1,
        val_fraction=0.0,
        min_steps=60,
        max_steps=60,
        batch_size=50,
        augment=1,
        semi=SemiConfig(ratio=2, threshold=0.8),
    )
    runs = []
    for _ in range(2):
        model = models.build("cnn2", seed=0)
        result = fit(model, x[:200], y[:200], config=config, seed=1, unlabelled=x)
        runs.append((result, model))
    (result, model), (_, again) = runs
    assert result.steps == 60
    assert result.confident is not None and 0 < result.confident <= 1
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), again.parameters(), strict=True))
    assert accuracy(model, xt, yt) > 0.6  # 200 answers, 60 steps: far above chance (0.1)
