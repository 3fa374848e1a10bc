"""ART's query-only baselines through our oracle: queries counted per image, stopped at the first success."""

from __future__ import annotations

import numpy as np
import pytest
from torch import nn

from activethief.attacks.art_baselines import run_art_baseline
from activethief.errors import ConfigError
from activethief.oracle import ModelOracle
from activethief.training import predict_proba

Mnist = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@pytest.mark.parametrize("name", ["square", "simba"])
def test_art_queries_are_counted_per_image(name: str, target_model: nn.Module, mnist_small: Mnist) -> None:
    _, _, xt, yt = mnist_small
    keep = np.flatnonzero(predict_proba(target_model, xt[:50]).argmax(1) == yt[:50])[:4]
    oracle = ModelOracle(target_model)
    result = run_art_baseline(name, oracle, xt[keep], yt[keep], eps=0.3, max_queries_per_image=40, seed=0)
    assert oracle.used == result.total_queries
    assert (result.queries <= 40).all() and (result.queries >= 1).all()
    assert ((result.queries == 40) | result.success).all()  # an image stops early only on success


def test_label_only_hopskipjump_respects_the_budget(target_model: nn.Module, mnist_small: Mnist) -> None:
    _, _, xt, yt = mnist_small
    oracle = ModelOracle(target_model, mode="label")
    result = run_art_baseline("hopskipjump", oracle, xt[:2], yt[:2], eps=0.2, max_queries_per_image=30)
    assert oracle.used == result.total_queries <= 60


def test_unknown_baseline_is_refused(target_model: nn.Module, mnist_small: Mnist) -> None:
    _, _, xt, yt = mnist_small
    with pytest.raises(ConfigError, match="unknown ART baseline"):
        run_art_baseline("nes", ModelOracle(target_model), xt[:1], yt[:1], eps=0.3, max_queries_per_image=5)


@pytest.mark.parametrize("name", ["square", "simba", "hopskipjump"])
def test_l2_baselines_count_and_judge_success_in_the_l2_ball(
    name: str, target_model: nn.Module, mnist_small: Mnist
) -> None:
    _, _, xt, yt = mnist_small
    keep = np.flatnonzero(predict_proba(target_model, xt[:50]).argmax(1) == yt[:50])[:3]
    oracle = ModelOracle(target_model)
    sent: list[np.ndarray] = []
    query = oracle.query

    def record(images: np.ndarray) -> np.ndarray:
        sent.append(np.array(images))
        return query(images)

    oracle.query = record  # type: ignore[method-assign]
    result = run_art_baseline(
        name, oracle, xt[keep], yt[keep], eps=2.0, max_queries_per_image=30, seed=0, norm="2"
    )
    assert result.attack["norm"] == "2"
    assert oracle.used == result.total_queries == sum(len(s) for s in sent)
    assert ((result.queries == 30) | result.success).all()
    # each success was judged on its last query, which lies in the L2 ball and fools the target
    ends = np.cumsum(result.queries) - 1
    images = np.concatenate(sent)
    for i in np.flatnonzero(result.success):
        delta = images[ends[i]] - xt[keep][i]
        assert np.linalg.norm(delta) <= 2.0 + 1e-4
        assert predict_proba(target_model, images[ends[i]][None]).argmax(1)[0] != yt[keep][i]


def test_a_non_finite_candidate_is_never_sent_and_is_counted(target_model: nn.Module) -> None:
    from activethief.attacks.art_baselines import CountingTarget, _Stop
    from activethief.attacks.norms import ball
    from activethief.attacks.query import QueryBudget, TargetQueries

    oracle = ModelOracle(target_model)
    target = TargetQueries(oracle, 1, QueryBudget(10))
    counter = CountingTarget(target, targeted=False, eps=2.0, norm=ball("2"))
    counter.start(0, np.zeros((1, 28, 28), np.float32), 3)
    with pytest.raises(_Stop):
        counter(np.full((1, 1, 28, 28), np.nan, np.float32))
    assert oracle.used == 0 and counter.invalid == 1 and not counter.success
