"""Property tests on random Dirichlet probability rows: score bounds, ranking order, the strategy contract."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from activethief.selection import STRATEGIES, Entropy, LeastConfidence, Margin, Need, PoolView, make_strategy


@st.composite
def selection_requests(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """(probs, labelled, candidates, k, seed) with Dirichlet rows, some of them sharp, some duplicated."""
    n = draw(st.integers(2, 60))
    classes = draw(st.integers(2, 7))
    alpha = draw(st.sampled_from([0.05, 0.5, 1.0, 5.0]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(classes, alpha), size=n).astype(np.float32)
    if draw(st.booleans()):
        probs[: n // 2] = probs[0]  # duplicated rows: ties everywhere
    n_labelled = draw(st.integers(0, n - 1))
    order = rng.permutation(n).astype(np.int64)
    k = draw(st.integers(1, n - n_labelled))
    return probs, order[:n_labelled], order[n_labelled:], k, seed


@settings(max_examples=30, deadline=None)
@given(selection_requests())
def test_every_strategy_keeps_the_contract(
    request: tuple[np.ndarray, np.ndarray, np.ndarray, int, int],
) -> None:
    probs, labelled, candidates, k, seed = request
    for name in STRATEGIES:
        strategy = make_strategy(name, narrow_factor=2.0)
        if Need.MODEL in strategy.needs:
            continue  # DFAL needs a model and images: the contract tests and tests/selection/test_dfal.py
        # the features strategies get the probabilities as their features: the contract is the same
        view = PoolView(size=len(probs), probs=probs, features=probs)
        chosen = strategy.select(view, labelled, candidates, k, np.random.default_rng(seed))
        assert chosen.shape == (k,) and np.unique(chosen).size == k, name
        assert np.isin(chosen, candidates).all() and not np.isin(chosen, labelled).any(), name
        np.testing.assert_array_equal(
            chosen, strategy.select(view, labelled, candidates, k, np.random.default_rng(seed))
        )


@settings(max_examples=30, deadline=None)
@given(selection_requests())
def test_scores_are_bounded_and_ranks_are_sorted(
    request: tuple[np.ndarray, np.ndarray, np.ndarray, int, int],
) -> None:
    probs, *_ = request
    classes = probs.shape[1]
    tolerance = 1e-6
    for scorer, low, high in [
        (Entropy(), 0.0, math.log(classes)),
        (Margin(), -1.0, 0.0),
        (LeastConfidence(), 0.0, 1.0 - 1.0 / classes),
    ]:
        scores = scorer.score(probs)
        assert not np.isnan(scores).any()
        assert (scores >= low - tolerance).all() and (scores <= high + tolerance).all(), scorer.name
        order = scorer.rank(probs)
        ranked = scores[order]
        assert (np.diff(ranked) <= 0).all(), scorer.name
        tied = np.diff(ranked) == 0
        assert (np.diff(order)[tied] > 0).all(), scorer.name  # ties: lower row first
