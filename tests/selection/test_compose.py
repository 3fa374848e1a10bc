"""Compositions narrow before they diversify, keep every labelled point as a centre, and validate sizes."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from activethief.errors import ConfigError
from activethief.selection import (
    ClassBalanced,
    Composed,
    Entropy,
    KCenter,
    Narrow,
    RandomChoice,
    TopScore,
    make_strategy,
)


def _top_entropy(probs: np.ndarray, candidates: np.ndarray, count: int) -> set[int]:
    return set(candidates[Entropy().rank(probs, candidates)[:count]].tolist())


@pytest.mark.parametrize("name", ["entropy+kcenter", "entropy+uniform", "entropy+kcenter+uniform"])
@pytest.mark.parametrize(
    ("options", "narrowed"), [({}, 10 * 6), ({"narrow_factor": 3.5}, 21), ({"narrow": 25}, 25)]
)
def test_entropy_narrows_before_the_next_stage(
    name: str, options: dict[str, float], narrowed: int, make_pool: Callable
) -> None:
    pool = make_pool(n=400, classes=5, n_labelled=30, seed=4)
    allowed = _top_entropy(pool.probs, np.sort(pool.candidates), narrowed)
    for seed in range(3):
        chosen = make_strategy(name, **options).select(
            pool.probs, pool.labelled, pool.candidates, 6, np.random.default_rng(seed)
        )
        assert set(chosen.tolist()) <= allowed


def test_entropy_kcenter_uniform_is_the_three_stages_in_order(make_pool: Callable) -> None:
    pool = make_pool(n=500, classes=4, n_labelled=40, seed=8)
    k, rng = 10, np.random.default_rng(11)
    candidates = np.sort(pool.candidates)
    by_entropy = np.sort(TopScore(Entropy()).choose(pool.view, pool.labelled, candidates, 100, rng))
    by_kcenter = np.sort(KCenter().choose(pool.view, pool.labelled, by_entropy, 20, rng))
    expected = ClassBalanced().choose(pool.view, pool.labelled, by_kcenter, k, rng)
    chosen = make_strategy("entropy+kcenter+uniform").select(
        pool.probs, pool.labelled, pool.candidates, k, np.random.default_rng(11)
    )
    np.testing.assert_array_equal(chosen, expected)


def test_kcenter_in_a_composition_uses_all_labelled_points_as_centres() -> None:
    # Candidate 1 is the most uncertain but sits on labelled point 0; k-center must look past it.
    probs = np.array(
        [[0.34, 0.33, 0.33], [0.33, 0.34, 0.33], [0.5, 0.3, 0.2], [0.9, 0.05, 0.05], [0.05, 0.05, 0.9]],
        dtype=np.float32,
    )
    labelled, candidates, rng = np.array([0]), np.arange(1, 5), np.random.default_rng(0)
    assert make_strategy("entropy").select(probs, labelled, candidates, 1, rng)[0] == 1
    chosen = make_strategy("entropy+kcenter", narrow=2).select(probs, labelled, candidates, 1, rng)
    np.testing.assert_array_equal(chosen, [2])  # the farther of the two most uncertain


def test_a_stage_that_would_not_narrow_is_skipped(make_pool: Callable) -> None:
    pool = make_pool(n=40, n_labelled=10)
    composed = Composed([Narrow(RandomChoice(), count=1000)], TopScore(Entropy()))
    chosen = composed.select(pool.probs, pool.labelled, pool.candidates, 5, np.random.default_rng(0))
    plain = TopScore(Entropy()).select(
        pool.probs, pool.labelled, pool.candidates, 5, np.random.default_rng(0)
    )
    np.testing.assert_array_equal(chosen, plain)


@pytest.mark.parametrize(
    ("narrow", "k", "expected"),
    [
        (Narrow(RandomChoice()), 7, 70),
        (Narrow(RandomChoice(), factor=2.5), 3, math.ceil(7.5)),
        (Narrow(RandomChoice(), count=50), 7, 50),
        (Narrow(RandomChoice(), count=5), 7, 7),  # never fewer than k
    ],
)
def test_narrow_size(narrow: Narrow, k: int, expected: int) -> None:
    assert narrow.size(k) == expected


def test_composed_name_joins_the_stages() -> None:
    composed = Composed([Narrow(TopScore(Entropy())), Narrow(KCenter(), factor=2)], ClassBalanced())
    assert composed.name == "entropy+kcenter+uniform"


@pytest.mark.parametrize(
    "options",
    [
        {"narrow_factor": 0.5},
        {"narrow_factor": float("nan")},
        {"narrow": 0},
        {"narrow": 2.5},
        {"kcenter_factor": 0},
    ],
)
def test_bad_narrowing_options_are_config_errors(options: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="narrowing"):
        make_strategy("entropy+kcenter+uniform", **options)
