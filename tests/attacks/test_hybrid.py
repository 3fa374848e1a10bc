"""The hybrid attack and its query plumbing: per-image counting and budgets, stopping at the first success,
the substitute prior's effect, the label-only path, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from torch import nn
from typer.testing import CliRunner

from activethief import cli
from activethief.attacks.hybrid import HybridAttack
from activethief.attacks.query import QueryBudget, TargetQueries, margin
from activethief.errors import ConfigError
from activethief.oracle import CallableOracle, ModelOracle
from activethief.training import predict_proba

Mnist = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _one_hot(classes: np.ndarray, n_classes: int = 10) -> np.ndarray:
    return np.eye(n_classes, dtype=np.float32)[classes]


def _never_fooled(label: int) -> CallableOracle:
    """A target that answers `label` whatever it is shown."""
    return CallableOracle(lambda x: _one_hot(np.full(len(x), label)), 10)


class _FooledAfter:
    """A target that answers class 0 to its first k - 1 requests and class 1 from the k-th on."""

    def __init__(self, k: int) -> None:
        self.k, self.calls = k, 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        return _one_hot(np.full(len(x), 0 if self.calls < self.k else 1))


@pytest.fixture(scope="module")
def correct(mnist_small: Mnist, target_model: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """The first 40 test images the tiny target classifies correctly."""
    _, _, xt, yt = mnist_small
    keep = np.flatnonzero(predict_proba(target_model, xt[:200]).argmax(1) == yt[:200])[:40]
    return xt[keep], yt[keep]


def test_each_image_spends_exactly_its_budget_when_never_fooled(
    substitute: nn.Module, mnist_small: Mnist
) -> None:
    _, _, xt, _ = mnist_small
    oracle = _never_fooled(0)
    result = HybridAttack(eps=0.1, max_queries_per_image=7, proposals=2).run(
        substitute, oracle, xt[:5], np.zeros(5, np.int64)
    )
    assert result.queries.tolist() == [7] * 5
    assert not result.success.any()
    assert oracle.used == 35 == result.total_queries
    assert [row["queries"] for row in result.to_dict()["per_image"]] == [7] * 5


@pytest.mark.parametrize("k", [1, 4])
def test_stops_at_the_first_success(substitute: nn.Module, mnist_small: Mnist, k: int) -> None:
    _, _, xt, _ = mnist_small
    fn = _FooledAfter(k)
    oracle = CallableOracle(fn, 10)
    result = HybridAttack(eps=0.1, max_queries_per_image=10, proposals=2).run(
        substitute, oracle, xt[:3], np.zeros(3, np.int64)
    )
    assert result.success.all()
    assert result.queries.tolist() == [k] * 3
    assert oracle.used == 3 * k and fn.calls == k


def test_total_budget_is_shared_round_by_round(substitute: nn.Module, mnist_small: Mnist) -> None:
    _, _, xt, _ = mnist_small
    oracle = _never_fooled(0)
    result = HybridAttack(eps=0.1, max_queries_per_image=10, total_queries=23, proposals=2).run(
        substitute, oracle, xt[:5], np.zeros(5, np.int64)
    )
    assert result.queries.tolist() == [5, 5, 5, 4, 4]  # 4 rounds of 5, then the first 3 images
    assert oracle.used == 23


def test_oracle_budget_is_never_exceeded(substitute: nn.Module, mnist_small: Mnist) -> None:
    _, _, xt, _ = mnist_small
    oracle = CallableOracle(lambda x: _one_hot(np.zeros(len(x), np.int64)), 10, budget=8)
    result = HybridAttack(eps=0.1, max_queries_per_image=5, proposals=2).run(
        substitute, oracle, xt[:4], np.zeros(4, np.int64)
    )
    assert oracle.used == 8 == result.total_queries


def test_target_queries_refuse_an_image_beyond_its_budget() -> None:
    target = TargetQueries(_never_fooled(0), 2, QueryBudget(1))
    target.ask(np.array([0]), np.zeros((1, 1, 28, 28), np.float32))
    assert target.allowed(np.array([0, 1])).tolist() == [1]
    with pytest.raises(ConfigError, match="per-image"):
        target.ask(np.array([0]), np.zeros((1, 1, 28, 28), np.float32))


def test_bad_budgets_are_refused() -> None:
    with pytest.raises(ConfigError, match="per image"):
        HybridAttack(max_queries_per_image=0)
    with pytest.raises(ConfigError, match="continuation"):
        HybridAttack(continuation="nes")


def test_margin_is_negative_exactly_when_fooled() -> None:
    answers = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1]], np.float32)
    goal = np.array([0, 0])
    assert (margin(answers, goal, targeted=False) < 0).tolist() == [False, True]
    assert (margin(answers, np.array([1, 1]), targeted=True) < 0).tolist() == [False, True]


def test_the_substitute_prior_cuts_the_median_queries(
    substitute: nn.Module, target_model: nn.Module, correct: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = correct
    with_prior = HybridAttack(eps=0.2, max_queries_per_image=60, transfer_steps=10).run(
        substitute, ModelOracle(target_model), x, y, seed=0
    )
    without = HybridAttack(eps=0.2, max_queries_per_image=60, use_transfer=False, continuation="square").run(
        substitute, ModelOracle(target_model), x, y, seed=0
    )
    assert np.median(with_prior.queries) < np.median(without.queries)
    assert with_prior.success_rate >= without.success_rate


def test_targeted_successes_reach_the_goal_inside_the_ball(
    substitute: nn.Module, target_model: nn.Module, correct: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = correct
    x, y = x[:15], y[:15]
    result = HybridAttack(
        eps=0.3, target_class="least-likely", max_queries_per_image=30, transfer_steps=10
    ).run(substitute, ModelOracle(target_model), x, y)
    assert result.adversarial is not None and result.success.any()
    assert np.abs(result.adversarial - x).max() <= 0.3 + 1e-6
    predicted = predict_proba(target_model, result.adversarial).argmax(1)
    assert (predicted[result.success] == result.goal[result.success]).all()
    assert (result.goal != y).all()


def test_label_only_targets_get_the_guided_search(
    substitute: nn.Module, target_model: nn.Module, correct: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = correct
    x, y = x[:20], y[:20]
    oracle = ModelOracle(target_model, mode="label")
    result = HybridAttack(eps=0.2, max_queries_per_image=15, transfer_steps=10, guided_steps=5).run(
        substitute, oracle, x, y
    )
    assert result.attack["continuation_used"] == "guided"
    assert oracle.used == result.total_queries
    assert result.success_rate >= result.extra["transfer_success_rate"]
    assert result.adversarial is not None
    predicted = predict_proba(target_model, result.adversarial).argmax(1)
    assert (predicted[result.success] != y[result.success]).all()


def test_pure_transfer_is_one_query_per_image(
    substitute: nn.Module, target_model: nn.Module, correct: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = correct
    oracle = ModelOracle(target_model)
    result = HybridAttack(eps=0.2, continuation="none", transfer_steps=5).run(
        substitute, oracle, x[:10], y[:10]
    )
    assert result.queries.tolist() == [1] * 10 and oracle.used == 10


def test_any_module_is_a_substitute(target_model: nn.Module, correct: tuple[np.ndarray, np.ndarray]) -> None:
    class Mean(nn.Module):  # a two-member ensemble averaging logits
        def __init__(self, members: list[nn.Module]) -> None:
            super().__init__()
            self.members = nn.ModuleList(members)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.stack([m(x) for m in self.members]).mean(0)

    x, y = correct
    result = HybridAttack(eps=0.2, max_queries_per_image=5, transfer_steps=3).run(
        Mean([target_model, target_model]), ModelOracle(target_model), x[:5], y[:5]
    )
    assert result.n == 5


@pytest.mark.parametrize(("norm", "eps"), [("inf", "0.2"), ("2", "1.5")])
def test_cli_hybrid_lists_per_image_queries(
    model_files: dict[str, Path], tmp_path: Path, norm: str, eps: str
) -> None:
    app: typer.Typer = cli.app
    if not any(command.name == "attack" for command in app.registered_commands):
        cli._register_optional_commands()
    out = tmp_path / "hybrid"
    args = ["attack", "--method", "hybrid", "--substitute", str(model_files["substitute"])]
    args += ["--target", str(model_files["target"]), "--n", "12", "--eps", eps, "--steps", "5"]
    args += ["--max-queries-per-image", "6", "--total-queries", "50", "--only-correct", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--norm", norm])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "result.json").read_text())
    queries = [row["queries"] for row in record["per_image"]]
    assert len(queries) == 12 and max(queries) <= 6 and sum(queries) <= 50
    assert record["oracle_used"] == sum(queries) == record["total_queries"]
    assert record["attack"].get("norm", "inf") == norm
    assert "success" in result.output
