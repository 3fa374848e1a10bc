"""Cross-check against the Adversarial Robustness Toolbox on the same trained model and inputs.

Same conventions as ART's PyTorch PGD: signed (L∞) or unit-length (L2) step, clip to [0, 1], then project
onto the ε-ball; cross-entropy gradients; no random start. Under L∞ the results agree to float tolerance
(in practice bit for bit); under L2 to 1e-4 (ART adds 1e-7 to the norms it divides by).
"""

from __future__ import annotations

import numpy as np
import pytest
from torch import nn

from activethief.attacks import FGSM, MIFGSM, PGD

art_classification = pytest.importorskip("art.estimators.classification")
art_evasion = pytest.importorskip("art.attacks.evasion")

Mnist = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
BATCH = 64


@pytest.fixture(scope="module")
def art_model(substitute: nn.Module) -> object:
    return art_classification.PyTorchClassifier(
        model=substitute,
        loss=nn.CrossEntropyLoss(reduction="sum"),
        input_shape=(1, 28, 28),
        nb_classes=10,
        clip_values=(0.0, 1.0),
        device_type="cpu",
    )


@pytest.fixture(scope="module")
def inputs(mnist_small: Mnist) -> tuple[np.ndarray, np.ndarray]:
    return mnist_small[2][:BATCH], mnist_small[3][:BATCH]


def _close(ours: np.ndarray, theirs: np.ndarray) -> None:
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)


@pytest.mark.parametrize("eps", [0.05, 0.3])
def test_fgsm_matches_art(eps: float, substitute: nn.Module, art_model: object, inputs: tuple) -> None:
    x, y = inputs
    theirs = art_evasion.FastGradientMethod(art_model, norm=np.inf, eps=eps, batch_size=BATCH).generate(
        x, y=y
    )
    _close(FGSM(eps=eps, batch_size=BATCH)(substitute, x, y), theirs)


# (norm ours, norm ART's, eps, step, steps, tolerance): bit for bit under L∞; ART adds 1e-7 to L2 norms
PGD_CASES = [("inf", np.inf, 0.3, 0.02, 20, 1e-6), ("2", 2, 2.0, 0.4, 10, 1e-4)]


@pytest.mark.parametrize("target_class", [None, 7])
@pytest.mark.parametrize("case", PGD_CASES, ids=["linf", "l2"])
def test_pgd_without_random_start_matches_art(
    target_class: int | None, case: tuple, substitute: nn.Module, art_model: object, inputs: tuple
) -> None:
    x, y = inputs
    norm, art_norm, eps, step, steps, tolerance = case
    ours = PGD(
        eps=eps,
        steps=steps,
        step_size=step,
        random_start=False,
        target_class=target_class,
        batch_size=BATCH,
        norm=norm,
    )
    art_attack = art_evasion.ProjectedGradientDescent(
        art_model,
        norm=art_norm,
        eps=eps,
        eps_step=step,
        max_iter=steps,
        targeted=target_class is not None,
        num_random_init=0,
        batch_size=BATCH,
        verbose=False,
    )
    goal = ours.goal_classes(substitute, x, y)
    np.testing.assert_allclose(ours(substitute, x, y), art_attack.generate(x, y=goal), rtol=0, atol=tolerance)


def test_mi_fgsm_matches_art_momentum_iterative_method(
    substitute: nn.Module, art_model: object, inputs: tuple
) -> None:
    x, y = inputs
    art_attack = art_evasion.MomentumIterativeMethod(
        art_model,
        norm=np.inf,
        eps=0.3,
        eps_step=0.03,
        max_iter=10,
        decay=1.0,
        batch_size=BATCH,
        verbose=False,
    )
    _close(MIFGSM(eps=0.3, steps=10, batch_size=BATCH)(substitute, x, y), art_attack.generate(x, y=y))


def test_l2_fgm_matches_art(substitute: nn.Module, art_model: object, inputs: tuple) -> None:
    x, y = inputs
    theirs = art_evasion.FastGradientMethod(art_model, norm=2, eps=2.0, batch_size=BATCH).generate(x, y=y)
    np.testing.assert_allclose(FGSM(eps=2.0, norm="2", batch_size=BATCH)(substitute, x, y), theirs, atol=1e-4)
