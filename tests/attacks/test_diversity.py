"""Input diversity and translation invariance: seeded, shape-preserving transforms, the DI-MI-FGSM attack."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from activethief.attacks import MIFGSM
from activethief.attacks.diversity import (
    DIMIFGSM,
    TIDIMIFGSM,
    InputDiversity,
    diverse_inputs,
    gaussian_kernel,
    smooth_gradient,
)
from activethief.attacks.ensemble import Ensemble
from activethief.attacks.registry import ATTACKS, make_attack
from activethief.errors import ConfigError

Mnist = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _images(mnist_small: Mnist, n: int = 16) -> torch.Tensor:
    return torch.from_numpy(mnist_small[2][:n])


def test_diverse_inputs_are_seeded_and_keep_the_shape(mnist_small: Mnist) -> None:
    x = _images(mnist_small)
    a = diverse_inputs(x, torch.Generator().manual_seed(3), prob=1.0)
    b = diverse_inputs(x, torch.Generator().manual_seed(3), prob=1.0)
    c = diverse_inputs(x, torch.Generator().manual_seed(4), prob=1.0)
    assert a.shape == x.shape and a.dtype == x.dtype
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0 + 1e-6
    # Every image was shrunk: its ink mass drops by about the square of the scale, never grows.
    assert bool((a.sum((1, 2, 3)) < x.sum((1, 2, 3))).all())


def test_diverse_inputs_apply_with_the_given_probability(mnist_small: Mnist) -> None:
    x = _images(mnist_small, 200)
    torch.testing.assert_close(diverse_inputs(x, torch.Generator().manual_seed(0), prob=0.0), x)
    # resize_rate 1 is the identity map (scale 1, no room to shift).
    out = diverse_inputs(x, torch.Generator().manual_seed(0), prob=1.0, resize_rate=1.0)
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)
    half = diverse_inputs(x, torch.Generator().manual_seed(0), prob=0.5)
    changed = (half - x).abs().flatten(1).amax(1) > 0
    assert 0.3 < float(changed.float().mean()) < 0.7


def test_diverse_inputs_pass_gradients(mnist_small: Mnist) -> None:
    x = _images(mnist_small, 4).requires_grad_(True)
    diverse_inputs(x, torch.Generator().manual_seed(0), prob=1.0).sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_input_diversity_wrapper_averages_the_loss_over_copies(
    substitute: nn.Module, mnist_small: Mnist
) -> None:
    x, goal = _images(mnist_small, 8), torch.from_numpy(mnist_small[3][:8]).long()
    wrapped = InputDiversity(
        substitute, torch.Generator().manual_seed(0), prob=1.0, resize_rate=0.8, samples=3
    )
    with torch.no_grad():
        assert wrapped(x).shape == (8, 10)
        loss = wrapped.attack_cross_entropy(x, goal)
    assert loss.ndim == 0 and float(loss) > 0


def test_gaussian_smoothing_keeps_shape_and_mass() -> None:
    kernel = gaussian_kernel(5, 1.5)
    assert kernel.shape == (5, 5) and float(kernel.sum()) == pytest.approx(1.0)
    assert float(kernel[2, 2]) == float(kernel.max())
    grad = torch.zeros(2, 1, 28, 28)
    grad[:, :, 14, 14] = 1.0
    smooth = smooth_gradient(grad, 5, 1.5)
    assert smooth.shape == grad.shape and float(smooth.sum()) == pytest.approx(2.0, rel=1e-5)
    assert float(smooth[0, 0, 14, 14]) < 1.0 and float(smooth[0, 0, 13, 14]) > 0


def test_di_mi_fgsm_is_seeded_bounded_and_transfers_like_an_attack(
    substitute: nn.Module, target_model: nn.Module, mnist_small: Mnist
) -> None:
    x, y = mnist_small[2][:100], mnist_small[3][:100]
    attack = DIMIFGSM(eps=0.3, steps=10, samples=2)
    first, again = attack(substitute, x, y, seed=5), attack(substitute, x, y, seed=5)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, attack(substitute, x, y, seed=6))
    assert first.shape == x.shape and float(np.abs(first - x).max()) <= 0.3 + 1e-6
    with torch.no_grad():
        fooled = substitute(torch.from_numpy(first)).argmax(1).numpy() != y
    assert fooled.mean() > 0.8  # still a white-box attack on the model it was crafted on


def test_di_off_reduces_to_mi_fgsm(substitute: nn.Module, mnist_small: Mnist) -> None:
    x, y = mnist_small[2][:50], mnist_small[3][:50]
    plain = MIFGSM(eps=0.2, steps=5)(substitute, x, y, seed=0)
    off = DIMIFGSM(eps=0.2, steps=5, diversity_prob=0.0)(substitute, x, y, seed=0)
    assert float(np.abs(plain - off).mean()) < 1e-3  # same steps, up to sign flips of near-zero gradients


def test_ti_smoothing_changes_the_perturbation(substitute: nn.Module, mnist_small: Mnist) -> None:
    x, y = mnist_small[2][:50], mnist_small[3][:50]
    di = DIMIFGSM(eps=0.2, steps=5)(substitute, x, y, seed=0)
    ti = TIDIMIFGSM(eps=0.2, steps=5)(substitute, x, y, seed=0)
    assert float(np.abs(di - ti).mean()) > 0.01 and float(np.abs(ti - x).max()) <= 0.2 + 1e-6


def test_di_works_on_an_ensemble_with_averaged_losses(
    substitute: nn.Module, target_model: nn.Module, mnist_small: Mnist
) -> None:
    x, y = mnist_small[2][:32], mnist_small[3][:32]
    ensemble = Ensemble([substitute, target_model], combine="loss")
    adversarial = TIDIMIFGSM(eps=0.3, steps=5, target_class="least-likely")(ensemble, x, y, seed=0)
    assert adversarial.shape == x.shape and float(np.abs(adversarial - x).max()) <= 0.3 + 1e-6


def test_registry_names_and_bad_settings() -> None:
    assert {"di-mi-fgsm", "ti-di-mi-fgsm"} <= set(ATTACKS)
    di = make_attack("di-mi-fgsm", eps=0.3, steps=20, samples=4)
    assert (
        isinstance(di, DIMIFGSM)
        and di.samples == 4
        and di.kernel_size == 0
        and di.alpha == pytest.approx(0.015)
    )
    ti = make_attack("TI-DI-MI-FGSM", eps=0.2, target_class="ll")
    assert isinstance(ti, TIDIMIFGSM) and ti.kernel_size == 5 and ti.targeted
    assert ti.config()["method"] == "ti-di-mi-fgsm" and ti.config()["diversity_prob"] == 0.5
    for settings, message in (
        ({"diversity_prob": 1.5}, "diversity_prob"),
        ({"resize_rate": 0.0}, "resize_rate"),
        ({"samples": 0}, "samples"),
        ({"kernel_size": 4}, "kernel_size"),
        ({"kernel_sigma": -1.0}, "kernel_sigma"),
        ({"steps": 0}, "steps"),
    ):
        with pytest.raises(ConfigError, match=message):
            DIMIFGSM(**settings)
    with pytest.raises(ConfigError, match="di-mi-fgsm"):
        make_attack("di-fgsm")
