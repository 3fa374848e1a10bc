"""Transfer evaluation: crafted on the substitute, sent through the oracle, counted and budgeted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from torch import nn

from activethief import models
from activethief.attacks import FGSM, LEAST_LIKELY, PGD, evaluate_transfer, plot_examples, success_rates
from activethief.errors import BudgetExceededError, ConfigError
from activethief.oracle import ModelOracle

Mnist = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
N = 60


def test_success_rates_count_only_images_the_model_got_right() -> None:
    labels = np.array([0, 1, 2, 3, 4])
    clean = np.array([0, 1, 2, 3, 9])  # the last one was wrong before the attack: not counted
    adversarial = np.array([5, 1, 7, 3, 4])
    goal = np.array([5, 1, 7, 6, 8])  # image 1's goal is its own class: not a targeted candidate
    assert success_rates(labels, labels, clean, adversarial, targeted=False) == (0.5, None)
    untargeted, targeted = success_rates(labels, goal, clean, adversarial, targeted=True)
    assert untargeted == 0.5 and targeted == pytest.approx(2 / 3)
    assert success_rates(labels, labels, labels + 1, labels, targeted=False) == (None, None)


def test_transfer_spends_counted_unkeyed_queries_and_reports_everything(
    substitute: nn.Module, target_model: nn.Module, mnist_small: Mnist
) -> None:
    x, y = mnist_small[2][:N], mnist_small[3][:N]
    oracle = ModelOracle(target_model)
    oracle.query(mnist_small[0][:5], keys=np.arange(5))  # five stolen labels, bought before the attack
    result = evaluate_transfer(
        substitute, oracle, x, y, PGD(eps=0.3, steps=10, step_size=0.05), white_box_target=target_model
    )
    assert (result.clean_queries, result.adversarial_queries) == (N, N)
    assert oracle.used == result.oracle_used == 5 + 2 * N
    assert oracle.ledger.unkeyed() == 2 * N and len(oracle.ledger) == 5  # the stealing answers are untouched
    assert result.n == N and result.attack["method"] == "pgd" and result.attack["steps"] == 10
    assert result.target_correct == int(result.target_accuracy * N + 0.5)
    for rate in (
        result.transfer_success_rate,
        result.whitebox_success_rate,
        result.target_whitebox_success_rate,
    ):
        assert rate is not None and 0.0 <= rate <= 1.0
    assert result.whitebox_success_rate is not None and result.whitebox_success_rate > 0.9
    assert result.targeted_transfer_success_rate is None
    assert 0.0 < result.mean_linf <= 0.3 + 1e-6 and result.mean_l2 > result.mean_linf
    record = json.loads(json.dumps(result.to_dict()))
    assert "examples" not in record and record["transfer_success_rate"] == result.transfer_success_rate
    assert result.examples is not None and result.examples.adversarial.shape == x.shape


def test_transfer_agrees_with_a_direct_computation(
    substitute: nn.Module, target_model: nn.Module, mnist_small: Mnist
) -> None:
    x, y = mnist_small[2][:N], mnist_small[3][:N]
    attack = FGSM(eps=0.2)
    result = evaluate_transfer(substitute, ModelOracle(target_model), x, y, attack)
    adversarial = attack(substitute, x, y)
    np.testing.assert_array_equal(result.examples.adversarial, adversarial)  # type: ignore[union-attr]
    clean = ModelOracle(target_model).query(x).argmax(1)
    after = ModelOracle(target_model).query(adversarial).argmax(1)
    correct = clean == y
    assert result.transfer_success_rate == pytest.approx((after[correct] != y[correct]).mean())


def test_reusing_the_targets_clean_answers_saves_queries(
    substitute: nn.Module, target_model: nn.Module, mnist_small: Mnist
) -> None:
    x, y = mnist_small[2][:N], mnist_small[3][:N]
    oracle = ModelOracle(target_model)
    clean_answers = oracle.query(x)
    first = evaluate_transfer(substitute, oracle, x, y, FGSM(eps=0.3), target_clean=clean_answers)
    second = evaluate_transfer(substitute, oracle, x, y, FGSM(eps=0.3), target_clean=clean_answers.argmax(1))
    assert first.clean_queries == 0 and first.adversarial_queries == N
    assert oracle.used == 3 * N
    assert first.to_dict() | {"seconds": 0, "oracle_used": 0} == second.to_dict() | {
        "seconds": 0,
        "oracle_used": 0,
    }
    with pytest.raises(ConfigError, match="target_clean must be"):
        evaluate_transfer(substitute, oracle, x, y, FGSM(), target_clean=clean_answers[:5])


def test_a_too_small_budget_raises_before_spending_anything(
    substitute: nn.Module, target_model: nn.Module, mnist_small: Mnist
) -> None:
    x, y = mnist_small[2][:N], mnist_small[3][:N]
    oracle = ModelOracle(target_model, budget=2 * N - 1)
    with pytest.raises(BudgetExceededError, match=rf"0 of {2 * N - 1} queries used, {2 * N} more asked"):
        evaluate_transfer(substitute, oracle, x, y, FGSM(eps=0.3))
    assert oracle.used == 0
    exact = ModelOracle(target_model, budget=2 * N)
    assert evaluate_transfer(substitute, exact, x, y, FGSM(eps=0.3)).oracle_budget == 2 * N
    assert exact.remaining == 0


def test_targeted_transfer_reports_targeted_rates(
    substitute: nn.Module, target_model: nn.Module, mnist_small: Mnist
) -> None:
    x, y = mnist_small[2][:N], mnist_small[3][:N]
    attack = PGD(eps=0.3, steps=10, step_size=0.05, target_class=LEAST_LIKELY)
    result = evaluate_transfer(
        substitute, ModelOracle(target_model), x, y, attack, white_box_target=target_model
    )
    for rate in (
        result.targeted_transfer_success_rate,
        result.targeted_whitebox_success_rate,
        result.target_targeted_whitebox_success_rate,
    ):
        assert rate is not None and 0.0 <= rate <= 1.0
    assert result.targeted_whitebox_success_rate is not None and result.targeted_whitebox_success_rate > 0.6
    assert result.attack["target_class"] == LEAST_LIKELY


def test_a_substitute_for_another_number_of_classes_is_rejected(
    target_model: nn.Module, mnist_small: Mnist
) -> None:
    x, y = mnist_small[2][:4], np.zeros(4, np.int64)
    with pytest.raises(ConfigError, match="substitute has 5 classes but the target has 10"):
        evaluate_transfer(models.build("mlp", 5, seed=0), ModelOracle(target_model), x, y, FGSM())
    with pytest.raises(ConfigError, match="no images"):
        evaluate_transfer(models.build("mlp", 10, seed=0), ModelOracle(target_model), x[:0], y[:0], FGSM())


def test_plot_examples_writes_a_png(
    substitute: nn.Module, target_model: nn.Module, mnist_small: Mnist, tmp_path: Path
) -> None:
    x, y = mnist_small[2][:12], mnist_small[3][:12]
    result = evaluate_transfer(substitute, ModelOracle(target_model), x, y, FGSM(eps=0.2))
    assert result.examples is not None
    path = plot_examples(result.examples, tmp_path / "sub" / "grid.png", count=6, title="fgsm")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_images_of_another_shape_than_the_targets_are_rejected_before_any_query(
    substitute: nn.Module, target_model: nn.Module
) -> None:
    oracle = ModelOracle(target_model)
    rgb = np.zeros((3, 3, 32, 32), np.float32)
    with pytest.raises(ConfigError, match=r"shape \[3, 3, 32, 32\].*\(C, H, W\) = \(1, 28, 28\)"):
        evaluate_transfer(substitute, oracle, rgb, np.zeros(3, np.int64), FGSM())
    assert oracle.used == 0
