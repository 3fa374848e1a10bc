"""The contract every named strategy keeps: k unique candidates, never labelled, reproducible, clear errors.

All nine public strategies run through the same checks, with and without labelled points.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from activethief.errors import ConfigError
from activethief.selection import STRATEGIES, Need, PoolView, Strategy, make_strategy

PROBABILITY_STRATEGIES = [name for name in STRATEGIES if make_strategy(name).needs <= {Need.PROBS}]

K = 15


def test_the_public_names_are_stable() -> None:
    assert STRATEGIES == (
        "random",
        "uniform",
        "least-confidence",
        "margin",
        "entropy",
        "kcenter",
        "kcenter@features",
        "coreset",
        "entropy+kcenter",
        "entropy+kcenter@features",
        "dfal",
        "dfal+kcenter",
        "badge",
        "entropy+uniform",
        "entropy+kcenter+uniform",
    )


@pytest.mark.parametrize(
    ("name", "needs"),
    [
        ("random", set()),
        ("uniform", {Need.PROBS}),
        ("kcenter", {Need.PROBS}),
        ("coreset", {Need.FEATURES}),
        ("kcenter@features", {Need.FEATURES}),
        ("entropy+kcenter@features", {Need.PROBS, Need.FEATURES}),
    ],
)
def test_strategies_declare_what_they_read(name: str, needs: set[Need], make_pool: Callable) -> None:
    strategy = make_strategy(name)
    assert strategy.needs == needs
    pool = make_pool()
    view = PoolView(
        size=pool.probs.shape[0],
        probs=pool.probs if Need.PROBS in needs else None,
        features=pool.features if Need.FEATURES in needs else None,
    )
    assert strategy.select(view, pool.labelled, pool.candidates, K, np.random.default_rng(0)).size == K
    if needs:
        with pytest.raises(ConfigError, match=r"needs the pool's|reads the substitute's"):
            strategy.select(
                PoolView(size=view.size), pool.labelled, pool.candidates, K, np.random.default_rng(0)
            )


def test_bad_features_are_config_errors(make_pool: Callable) -> None:
    pool = make_pool()
    broken = pool.features.copy()
    broken[3, 1] = np.nan
    for features, message in (
        (broken, "NaN"),
        (pool.features[:-1], "rows for"),
        (pool.features[:, 0], "shape"),
    ):
        view = PoolView(size=pool.probs.shape[0], features=features)
        with pytest.raises(ConfigError, match=message):
            make_strategy("kcenter@features").select(
                view, pool.labelled, pool.candidates, 3, np.random.default_rng(0)
            )


@pytest.mark.parametrize("name", STRATEGIES)
def test_strategy_is_named_after_its_public_name(name: str) -> None:
    strategy = make_strategy(name)
    assert isinstance(strategy, Strategy)
    assert strategy.name == name


@pytest.mark.parametrize("n_labelled", [0, 20])
@pytest.mark.parametrize("name", STRATEGIES)
def test_returns_k_unique_candidates_never_labelled(name: str, n_labelled: int, make_pool: Callable) -> None:
    pool = make_pool(n_labelled=n_labelled)
    chosen = make_strategy(name).select(
        pool.view, pool.labelled, pool.candidates, K, np.random.default_rng(7)
    )
    assert chosen.dtype == np.int64
    assert chosen.shape == (K,)
    assert np.unique(chosen).size == K
    assert np.isin(chosen, pool.candidates).all()
    assert not np.isin(chosen, pool.labelled).any()


@pytest.mark.parametrize("n_labelled", [0, 20])
@pytest.mark.parametrize("name", STRATEGIES)
def test_same_seed_same_result(name: str, n_labelled: int, make_pool: Callable) -> None:
    pool = make_pool(n_labelled=n_labelled)
    strategy = make_strategy(name)
    first = strategy.select(pool.view, pool.labelled, pool.candidates, K, np.random.default_rng(3))
    again = make_strategy(name).select(pool.view, pool.labelled, pool.candidates, K, np.random.default_rng(3))
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize("name", STRATEGIES)
def test_result_depends_on_the_candidate_set_not_its_order(name: str, make_pool: Callable) -> None:
    pool = make_pool()
    strategy = make_strategy(name)
    shuffled = strategy.select(pool.view, pool.labelled, pool.candidates, K, np.random.default_rng(3))
    ordered = strategy.select(pool.view, pool.labelled, np.sort(pool.candidates), K, np.random.default_rng(3))
    np.testing.assert_array_equal(shuffled, ordered)


@pytest.mark.parametrize("name", STRATEGIES)
def test_k_equal_to_all_candidates_returns_them_all(name: str, make_pool: Callable) -> None:
    pool = make_pool(n=30, n_labelled=10)
    chosen = make_strategy(name).select(
        pool.view, pool.labelled, pool.candidates, 20, np.random.default_rng(0)
    )
    np.testing.assert_array_equal(np.sort(chosen), np.sort(pool.candidates))


@pytest.mark.parametrize("n_labelled", [0, 20])
@pytest.mark.parametrize("name", STRATEGIES)
def test_k_larger_than_candidates_is_a_config_error(name: str, n_labelled: int, make_pool: Callable) -> None:
    pool = make_pool(n_labelled=n_labelled)
    with pytest.raises(ConfigError, match=rf"cannot select k={pool.candidates.size + 1} points"):
        make_strategy(name).select(
            pool.view, pool.labelled, pool.candidates, pool.candidates.size + 1, np.random.default_rng(0)
        )


@pytest.mark.parametrize("name", STRATEGIES)
def test_global_random_state_is_untouched(name: str, make_pool: Callable) -> None:
    pool = make_pool()
    before = np.random.get_state()[1].copy()
    make_strategy(name).select(pool.view, pool.labelled, pool.candidates, K, np.random.default_rng(0))
    np.testing.assert_array_equal(np.random.get_state()[1], before)


@pytest.mark.parametrize("k", [0, -1, 2.0, True])
def test_k_must_be_a_positive_integer(k: object, make_pool: Callable) -> None:
    pool = make_pool()
    with pytest.raises(ConfigError, match="k must be"):
        make_strategy("entropy").select(
            pool.view, pool.labelled, pool.candidates, k, np.random.default_rng(0)
        )


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown selection strategy 'bald'.*entropy\+kcenter\+uniform"):
        make_strategy("bald")


def test_names_are_case_and_space_insensitive() -> None:
    assert make_strategy(" Entropy+KCenter ").name == "entropy+kcenter"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: (p.probs[:, :, None], p.labelled, p.candidates), "shape"),
        (lambda p: (p.probs[:0], p.labelled[:0], p.candidates[:0]), "shape"),
        (lambda p: (p.probs.astype(np.int64), p.labelled, p.candidates), "dtype"),
        (lambda p: (p.probs.tolist(), p.labelled, p.candidates), "numpy array"),
        (
            lambda p: (
                np.where(np.arange(p.probs.shape[0])[:, None] == 5, np.nan, p.probs),
                p.labelled,
                p.candidates,
            ),
            r"NaN or infinite values in 1 rows \(first: row 5\)",
        ),
        (lambda p: (p.probs, p.labelled, np.append(p.candidates, 10_000)), "outside the pool"),
        (lambda p: (p.probs, p.labelled, np.append(p.candidates, -1)), "outside the pool"),
        (lambda p: (p.probs, np.append(p.labelled, 10_000), p.candidates), "outside the pool"),
        (lambda p: (p.probs, p.labelled, p.candidates.reshape(-1, 1)), "1-D"),
        (lambda p: (p.probs, p.labelled, p.candidates.astype(np.float64)), "integer pool indices"),
        (lambda p: (p.probs, p.labelled, np.append(p.candidates, p.candidates[0])), "duplicate"),
        (lambda p: (p.probs, p.labelled, np.append(p.candidates, p.labelled[3])), "already labelled"),
    ],
)
def test_bad_inputs_are_config_errors(mutate: Callable, message: str, make_pool: Callable) -> None:
    probs, labelled, candidates = mutate(make_pool())
    for name in PROBABILITY_STRATEGIES:  # the features strategies' inputs: test_bad_features_...
        with pytest.raises(ConfigError, match=message):
            make_strategy(name).select(probs, labelled, candidates, 3, np.random.default_rng(0))


def test_rng_must_be_a_generator(make_pool: Callable) -> None:
    pool = make_pool()
    with pytest.raises(ConfigError, match=r"numpy\.random\.Generator"):
        make_strategy("random").select(pool.view, pool.labelled, pool.candidates, 3, 42)


def test_lists_and_small_integer_dtypes_are_accepted(make_pool: Callable) -> None:
    pool = make_pool()
    chosen = make_strategy("entropy").select(
        pool.view,
        pool.labelled.astype(np.int32).tolist(),
        pool.candidates.astype(np.uint32),
        4,
        np.random.default_rng(0),
    )
    assert chosen.dtype == np.int64 and chosen.size == 4
