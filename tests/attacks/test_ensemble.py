"""Ensembles of substitutes: fused outputs, gradients to every member, members from a run without queries."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from activethief import CallableOracle, models, steal
from activethief.attacks.base import cross_entropy_of
from activethief.attacks.ensemble import Ensemble, ensemble_from_run, keep_rounds, load_ensemble, round_path
from activethief.attacks.registry import ATTACKS, make_attack
from activethief.errors import ConfigError
from activethief.oracle import Ledger
from activethief.training import FitConfig, predict_proba

Mnist = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
QUICK = FitConfig(epochs=1, patience=1, batch_size=100, warmup_steps=2, val_fraction=0.0)


def _members(seed: int = 0) -> list[nn.Module]:
    return [models.build(arch, 10, seed=seed + i) for i, arch in enumerate(("cnn2", "mlp", "lenet"))]


def test_ensemble_averages_logits_probs_or_losses(mnist_small: Mnist) -> None:
    members = _members()
    x = torch.from_numpy(mnist_small[2][:8])
    goal = torch.from_numpy(mnist_small[3][:8]).long()
    logits = [m.eval()(x) for m in members]
    with torch.no_grad():
        fused = Ensemble(members)(x)
        torch.testing.assert_close(fused, torch.stack(logits).mean(0))
        probs = Ensemble(members, combine="probs")(x).exp()
        torch.testing.assert_close(probs, torch.stack([F.softmax(o, 1) for o in logits]).mean(0))
        loss = Ensemble(members, combine="loss").attack_cross_entropy(x, goal)
        expected = torch.stack([F.cross_entropy(o, goal, reduction="sum") for o in logits]).mean()
        torch.testing.assert_close(loss, expected)
        # With members' losses averaged the objective is not the fused logits' loss.
        assert not torch.isclose(cross_entropy_of(Ensemble(members), x, goal), loss)


@pytest.mark.parametrize("combine", ["logits", "probs", "loss"])
def test_gradients_reach_every_member_and_the_input(mnist_small: Mnist, combine: str) -> None:
    members = _members()
    ensemble = Ensemble(members, combine=combine)  # type: ignore[arg-type]
    x = torch.from_numpy(mnist_small[2][:4]).requires_grad_(True)
    goal = torch.from_numpy(mnist_small[3][:4]).long()
    cross_entropy_of(ensemble, x, goal).backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    for member in members:
        grads = [p.grad for p in member.parameters()]
        assert (
            all(g is not None for g in grads)
            and sum(float(g.abs().sum()) for g in grads if g is not None) > 0
        )


def test_input_gradient_of_the_logit_mean_is_the_mean_of_the_members(mnist_small: Mnist) -> None:
    members = _members()
    x = torch.from_numpy(mnist_small[2][:4])

    def input_grad(model: nn.Module) -> torch.Tensor:
        xr = x.clone().requires_grad_(True)
        model(xr)[:, 3].sum().backward()
        assert xr.grad is not None
        return xr.grad

    expected = torch.stack([input_grad(m) for m in members]).mean(0)
    torch.testing.assert_close(input_grad(Ensemble(members)), expected, rtol=1e-4, atol=1e-6)


def test_ensemble_refuses_bad_members() -> None:
    with pytest.raises(ConfigError, match="at least one member"):
        Ensemble([])
    with pytest.raises(ConfigError, match="combine must be one of"):
        Ensemble(_members(), combine="votes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="different input shapes"):
        Ensemble([models.build("cnn2", 10), models.build("cnn2", 10, input_shape=(3, 32, 32))])
    with pytest.raises(ConfigError, match="different numbers of classes"):
        Ensemble([models.build("cnn2", 10), models.build("cnn2", 5)])(torch.zeros(1, 1, 28, 28))
    with pytest.raises(ConfigError, match="2 names for 3 members"):
        Ensemble(_members(), names=["a", "b"])


@pytest.mark.parametrize("method", sorted(ATTACKS))
def test_every_attack_runs_on_an_ensemble(substitute: nn.Module, mnist_small: Mnist, method: str) -> None:
    x, y = mnist_small[2][:32], mnist_small[3][:32]
    ensemble = Ensemble([substitute, models.build("mlp", 10, seed=3)])
    attack = make_attack(method, eps=0.2, steps=None if method == "fgsm" else 3)
    adversarial = attack(ensemble, x, y, seed=0)
    assert adversarial.shape == x.shape and float(np.abs(adversarial - x).max()) <= 0.2 + 1e-6
    assert adversarial.min() >= 0.0 and adversarial.max() <= 1.0
    assert float(np.abs(adversarial - x).mean()) > 0.01


class CountingTarget:
    """A target that counts every image it is asked about."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.images = model, 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.images += len(x)
        return predict_proba(self.model, x)


@pytest.fixture(scope="module")
def tiny_run(
    tmp_path_factory: pytest.TempPathFactory, target_model: nn.Module, mnist_small: Mnist
) -> tuple[Path, CountingTarget, CallableOracle]:
    """A 300-query steal (rounds of 100) whose rounds are kept, with the counting target behind it."""
    out = tmp_path_factory.mktemp("ensemble-run") / "run"
    counting = CountingTarget(target_model)
    oracle = CallableOracle(counting, 10)
    steal(
        oracle,
        mnist_small[0][:600],
        budget=300,
        batch_size=100,
        out=out,
        quiet=True,
        fit=QUICK,
        on_round=keep_rounds(out),
    )
    return out, counting, oracle


def test_ensemble_from_run_spends_no_queries(
    tiny_run: tuple[Path, CountingTarget, CallableOracle], mnist_small: Mnist
) -> None:
    run, counting, oracle = tiny_run
    asked, used = counting.images, oracle.used
    assert asked == used == 300
    assert [round_path(run, r).exists() for r in (0, 1, 2, 3)] == [False, True, True, True]
    ensemble = ensemble_from_run(
        run, rounds=(1, 2), archs=("mlp",), pool=mnist_small[0][:600], fit_config=QUICK
    )
    assert ensemble.names == ["final", "round-1", "round-2", "mlp"] and len(ensemble.members) == 4
    assert counting.images == asked and oracle.used == used  # the target was never asked
    ledger = Ledger(run / "ledger.sqlite")
    assert len(ledger) == 300
    ledger.close()
    x = torch.from_numpy(mnist_small[2][:16])
    with torch.no_grad():
        assert ensemble(x).shape == (16, 10)
    # A round's file is the loop's own substitute of that round.
    kept = models.load(round_path(run, 2))[0]
    np.testing.assert_allclose(predict_proba(kept, x.numpy()), predict_proba(ensemble.members[2], x.numpy()))


def test_missing_round_files_are_retrained_from_the_ledger_and_cached(
    tiny_run: tuple[Path, CountingTarget, CallableOracle], mnist_small: Mnist, tmp_path: Path
) -> None:
    run, counting, _ = tiny_run
    copy = tmp_path / "copy"  # the run without its kept rounds (ledger with its WAL files)
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("rounds", "ensemble"))
    asked = counting.images
    pool = mnist_small[0][:600]
    first = ensemble_from_run(copy, rounds=(2,), final=False, pool=pool, fit_config=QUICK)
    cached = list((copy / "ensemble").glob("round-2-*.pt"))
    assert len(cached) == 1 and models.load(cached[0])[1]["trained_on"] == 200  # rounds 0 and 1 bought 200
    again = ensemble_from_run(copy, rounds=(2,), final=False, pool=pool, fit_config=QUICK)
    x = mnist_small[2][:16]
    np.testing.assert_array_equal(predict_proba(first, x), predict_proba(again, x))
    assert counting.images == asked
    with pytest.raises(ConfigError, match="not the pool"):
        ensemble_from_run(copy, archs=("mlp",), pool=mnist_small[0][600:1200], fit_config=QUICK)
    with pytest.raises(ConfigError, match="in-memory array; pass pool"):
        ensemble_from_run(copy, archs=("mlp",), fit_config=QUICK)  # an array pool cannot be reopened


def test_ensemble_from_run_refuses_an_empty_folder_and_no_members(
    tiny_run: tuple[Path, CountingTarget, CallableOracle], tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="holds no steal run"):
        ensemble_from_run(tmp_path)
    with pytest.raises(ConfigError, match="no ensemble members"):
        ensemble_from_run(tiny_run[0], final=False)


def test_load_ensemble_names_members_by_file(model_files: dict[str, Path]) -> None:
    ensemble = load_ensemble([model_files["substitute"], model_files["target"]], combine="probs")
    assert ensemble.names == ["substitute", "target"] and ensemble.combine == "probs"
