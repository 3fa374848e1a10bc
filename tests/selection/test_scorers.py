"""Scorer formulas on hand-computed rows, their orderings, tie-breaking and `mean_entropy`."""

from __future__ import annotations

import math

import numpy as np
import pytest

from activethief.errors import ConfigError
from activethief.selection import Entropy, LeastConfidence, Margin, Scorer, TopScore, entropy, mean_entropy

ROWS = np.array(
    [
        [0.5, 0.5, 0.0],  # entropy ln 2, margin 0, confidence 0.5
        [1.0, 0.0, 0.0],  # certain: every score at its minimum
        [1 / 3, 1 / 3, 1 / 3],  # maximal uncertainty
        [0.6, 0.3, 0.1],
        [0.1, 0.45, 0.45],  # top two tied: margin 0
    ],
    dtype=np.float32,
)


@pytest.mark.filterwarnings("error")
def test_entropy_formula_in_nats_and_safe_at_zero() -> None:
    expected = [
        math.log(2),
        0.0,
        math.log(3),
        -(0.6 * math.log(0.6) + 0.3 * math.log(0.3) + 0.1 * math.log(0.1)),
        -(0.1 * math.log(0.1) + 2 * 0.45 * math.log(0.45)),
    ]
    scores = Entropy().score(ROWS)
    assert scores.dtype == np.float64
    np.testing.assert_allclose(scores, expected, rtol=1e-6, atol=1e-7)
    assert not np.isnan(scores).any()


@pytest.mark.filterwarnings("error")
def test_entropy_of_one_hot_rows_is_exactly_zero() -> None:
    np.testing.assert_array_equal(entropy(np.eye(4, dtype=np.float32)), np.zeros(4))


def test_margin_is_minus_the_gap_between_the_top_two() -> None:
    np.testing.assert_allclose(Margin().score(ROWS), [0.0, -1.0, 0.0, -0.3, 0.0], atol=1e-6)


def test_margin_with_two_classes_and_one_class() -> None:
    np.testing.assert_allclose(Margin().score(np.array([[0.2, 0.8], [0.5, 0.5]])), [-0.6, 0.0])
    np.testing.assert_allclose(Margin().score(np.array([[1.0], [0.7]])), [-1.0, -0.7])


def test_least_confidence_is_one_minus_the_top_probability() -> None:
    np.testing.assert_allclose(LeastConfidence().score(ROWS), [0.5, 0.0, 2 / 3, 0.4, 0.55], atol=1e-6)


@pytest.mark.parametrize(
    ("scorer", "expected_order"),
    [
        (Entropy(), [2, 4, 3, 0, 1]),  # ln3 > H(0.1,.45,.45) > H(.6,.3,.1) > ln2 > 0
        (LeastConfidence(), [2, 4, 0, 3, 1]),
        (Margin(), [0, 2, 4, 3, 1]),  # three zero margins tie: lower row first
    ],
)
def test_rank_puts_the_most_informative_first_and_breaks_ties_by_index(
    scorer: Scorer, expected_order: list[int]
) -> None:
    np.testing.assert_array_equal(scorer.rank(ROWS), expected_order)


def test_rank_of_identical_rows_is_index_order() -> None:
    np.testing.assert_array_equal(Entropy().rank(np.full((6, 3), 1 / 3)), np.arange(6))


def test_rank_on_a_subset_of_rows_returns_positions_in_that_subset() -> None:
    rows = np.array([4, 1, 2], dtype=np.int64)
    np.testing.assert_array_equal(Entropy().rank(ROWS, rows), [2, 0, 1])  # rows 2 (ln 3), 4, 1


def test_top_score_strategy_picks_the_highest_scores_among_candidates() -> None:
    chosen = TopScore(Entropy()).select(
        ROWS, np.array([2]), np.array([0, 1, 3, 4]), 2, np.random.default_rng(0)
    )
    np.testing.assert_array_equal(chosen, [4, 3])


def test_scores_of_float64_and_float32_rows_agree() -> None:
    np.testing.assert_allclose(Entropy().score(ROWS.astype(np.float64)), Entropy().score(ROWS), rtol=1e-6)


def test_nan_probabilities_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="NaN"):
        Entropy().score(np.array([[0.5, np.nan]]))


def test_mean_entropy() -> None:
    assert mean_entropy(np.array([[0.5, 0.5], [1.0, 0.0]], dtype=np.float32)) == pytest.approx(
        math.log(2) / 2
    )
    assert isinstance(mean_entropy(ROWS), float)


def test_mean_entropy_needs_rows() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        mean_entropy(np.empty((0, 3), dtype=np.float32))
