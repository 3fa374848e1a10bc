"""The L∞ and L2 balls: steps, projections and random starts stay where the threat allows; L∞ is the
arithmetic every earlier result used; attacks and the hybrid take either norm."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from activethief.attacks import FGSM, MIFGSM, PGD
from activethief.attacks.hybrid import HybridAttack
from activethief.attacks.norms import L2, LInf, ball
from activethief.attacks.registry import make_attack
from activethief.errors import ConfigError
from activethief.oracle import ModelOracle

Mnist = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _images(n: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand((n, 1, 12, 12), generator=torch.Generator().manual_seed(seed))


def _l2(t: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(t.reshape(len(t), -1), dim=1)


def test_l2_projection_lands_in_the_ball_and_the_box() -> None:
    x = _images()
    far = x + 5.0 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    out = L2().project(far, x, 1.5)
    assert float(_l2(out - x).max()) <= 1.5 + 1e-5
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_l2_projection_keeps_points_already_inside() -> None:
    x = _images()
    near = (x + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    torch.testing.assert_close(L2().project(near, x, 1.5), near)


def test_l2_step_has_the_requested_length_and_zero_stays_zero() -> None:
    direction = torch.randn((4, 1, 12, 12), generator=torch.Generator().manual_seed(3))
    direction[2] = 0.0
    lengths = _l2(L2().step(direction, 0.7))
    torch.testing.assert_close(lengths, torch.tensor([0.7, 0.7, 0.0, 0.7]))


def test_random_points_are_in_their_balls() -> None:
    x = _images()
    g = torch.Generator().manual_seed(4)
    assert float(_l2(L2().random_point(x, 0.5, g) - x).max()) <= 0.5 + 1e-5
    assert float((LInf().random_point(x, 0.1, g) - x).abs().max()) <= 0.1 + 1e-6


def test_linf_ball_is_the_original_arithmetic() -> None:
    x = _images()
    y = x + torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    expected = (x + (y.clamp(0, 1) - x).clamp(-0.2, 0.2)).clamp(0, 1)
    assert torch.equal(LInf().project(y, x, 0.2), expected)
    assert torch.equal(LInf().step(y, 0.1), 0.1 * y.sign())


@pytest.mark.parametrize("name", ["2", "l2", "L2"])
def test_norm_names(name: str) -> None:
    assert ball(name).name == "2"
    assert PGD(norm=name).norm == "2"
    assert ball("linf").name == ball("inf").name == "inf"


def test_unknown_norm_is_refused() -> None:
    with pytest.raises(ConfigError, match="norm must be"):
        PGD(norm="1")


def test_linf_configs_do_not_name_the_norm_but_l2_configs_do() -> None:
    assert "norm" not in PGD().config() and PGD().config()["step_size"] == 0.01
    config = make_attack("pgd", eps=2.0, norm="2").config()
    assert config["norm"] == "2" and config["step_size"] == pytest.approx(2.5 * 2.0 / 40)


@pytest.mark.parametrize(
    "attack",
    [FGSM(eps=1.5, norm="2"), PGD(eps=1.5, steps=10, norm="2"), MIFGSM(eps=1.5, steps=5, norm="2")],
    ids=lambda a: a.name,
)
def test_l2_attacks_stay_in_the_l2_ball_and_move_the_model(
    attack: FGSM, substitute: nn.Module, mnist_small: Mnist
) -> None:
    _, _, xt, yt = mnist_small
    x, y = xt[:64], yt[:64]
    adversarial = attack(substitute, x, y, seed=0)
    lengths = np.linalg.norm((adversarial - x).reshape(len(x), -1), axis=1)
    assert lengths.max() <= 1.5 + 1e-4
    assert lengths.mean() > 0.5  # it used the ball, not a sliver of it
    with torch.no_grad():
        before = substitute(torch.from_numpy(x)).argmax(1).numpy()
        after = substitute(torch.from_numpy(adversarial)).argmax(1).numpy()
    assert (after != y).mean() > (before != y).mean()


def test_l2_hybrid_keeps_every_candidate_in_the_l2_ball(
    substitute: nn.Module, target_model: nn.Module, mnist_small: Mnist
) -> None:
    _, _, xt, yt = mnist_small
    x, y = xt[:30], yt[:30]
    sent: list[np.ndarray] = []
    oracle = ModelOracle(target_model)
    query = oracle.query

    def record(images: np.ndarray) -> np.ndarray:
        sent.append(np.array(images))
        return query(images)

    oracle.query = record  # type: ignore[method-assign]
    result = HybridAttack(eps=1.5, norm="2", max_queries_per_image=5).run(substitute, oracle, x, y)
    assert result.attack["norm"] == "2" and result.attack["continuation_used"] == "guided"
    assert result.total_queries == oracle.used == sum(len(s) for s in sent)
    assert result.adversarial is not None
    lengths = np.linalg.norm((result.adversarial - x).reshape(len(x), -1), axis=1)
    assert lengths.max() <= 1.5 + 1e-4


def test_square_continuation_is_refused_for_l2() -> None:
    with pytest.raises(ConfigError, match="L∞ windows only"):
        HybridAttack(eps=1.5, norm="2", continuation="square")
    assert HybridAttack(eps=1.5, norm="2", target_class="least-likely").norm == "2"


def test_targeted_l2_hybrid_successes_reach_the_goal_inside_the_ball(
    substitute: nn.Module, target_model: nn.Module, mnist_small: Mnist
) -> None:
    _, _, xt, yt = mnist_small
    x, y = xt[:20], yt[:20]
    oracle = ModelOracle(target_model)
    attack = HybridAttack(eps=5.0, norm="2", target_class="least-likely", max_queries_per_image=10)
    result = attack.run(substitute, oracle, x, y)
    assert result.attack["continuation_used"] == "guided" and oracle.used == result.total_queries
    assert result.adversarial is not None and result.success.any()
    lengths = np.linalg.norm((result.adversarial - x).reshape(len(x), -1), axis=1)
    assert lengths.max() <= 5.0 + 1e-4
    reached = oracle.evaluate(result.adversarial[result.success])
    assert reached is not None and (reached == result.goal[result.success]).all()
