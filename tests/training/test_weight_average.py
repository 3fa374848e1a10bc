"""`FitConfig.ema`: the returned model is the exponential moving average of the weights along training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from activethief.errors import ConfigError
from activethief.training import FitConfig, fit


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    return torch.rand(64, 1, 6, 6, generator=gen), torch.randint(0, 3, (64,), generator=gen)


def _model() -> nn.Module:
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 8), nn.ReLU(), nn.Linear(8, 3))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=gen))
    return model


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def _trained(steps: int, ema: float, *, validated: bool = False) -> tuple[list[torch.Tensor], float | None]:
    """The weights after `steps` steps (4 make one epoch), and the best validation loss when validated."""
    model = _model()
    x, y = _data()
    cfg = FitConfig(epochs=10, batch_size=16, val_fraction=0.0, max_steps=steps, lr=0.01, ema=ema)
    result = fit(model, x, y, config=cfg, seed=5, val=(x[:16], y[:16]) if validated else None)
    return _weights(model), result.best_val_loss


@pytest.mark.parametrize("validated", [False, True], ids=["no-validation", "validated"])
def test_the_model_returned_is_the_moving_average_of_the_steps(validated: bool) -> None:
    decay = 0.6
    # the plain trajectory: the weights after 1, ... 4 steps (a shorter run is the same steps' prefix)
    trajectory = [_trained(steps, 0.0)[0] for steps in range(1, 5)]
    expected = trajectory[0]  # the average starts at the first step's weights
    for weights in trajectory[1:]:
        expected = [decay * e + (1 - decay) * w for e, w in zip(expected, weights, strict=True)]
    averaged, val_loss = _trained(4, decay, validated=validated)
    for got, want, last in zip(averaged, expected, trajectory[-1], strict=True):
        assert torch.allclose(got, want, atol=1e-6)
        assert not torch.allclose(got, last, atol=1e-4)  # it is not just the last step's weights
    assert (val_loss is not None) == validated


@pytest.mark.parametrize("decay", [-0.1, 1.0, 1.5])
def test_a_decay_outside_zero_to_one_is_refused(decay: float) -> None:
    with pytest.raises(ConfigError, match="ema"):
        FitConfig(ema=decay)
