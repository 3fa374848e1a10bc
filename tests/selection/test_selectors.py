"""Random and class-balanced ("uniform") selection, and the equal-share rule with its redistribution."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from activethief.errors import ConfigError
from activethief.selection import ClassBalanced, RandomChoice, equal_shares


@pytest.mark.parametrize(
    ("counts", "k", "expected"),
    [
        ([5, 5, 5], 6, [2, 2, 2]),
        ([5, 5, 5], 15, [5, 5, 5]),
        ([1, 10, 10], 9, [1, 4, 4]),  # class 0 gives its 1; the 2 it could not take go to the others
        ([0, 3, 10], 9, [0, 3, 6]),  # empty class gets nothing; 3 + 6
    ],
)
def test_equal_shares(counts: list[int], k: int, expected: list[int]) -> None:
    np.testing.assert_array_equal(equal_shares(np.array(counts), k, np.random.default_rng(0)), expected)


def test_equal_shares_redistributes_over_several_rounds() -> None:
    # 20 over [2, 3, 100, 100]: 5 each -> [2, 3, 5, 5]; 5 left -> 2 each -> [2, 3, 7, 7]; 1 left at random.
    shares = equal_shares(np.array([2, 3, 100, 100]), 20, np.random.default_rng(0))
    np.testing.assert_array_equal(shares[:2], [2, 3])
    assert sorted(shares[2:]) == [7, 8]


def test_equal_shares_remainder_goes_to_randomly_drawn_groups() -> None:
    seen = set()
    for seed in range(20):
        shares = equal_shares(np.array([10, 10, 10]), 4, np.random.default_rng(seed))
        assert sorted(shares) == [1, 1, 2]
        seen.add(int(np.argmax(shares)))
    assert seen == {0, 1, 2}  # no group is always the lucky one


def test_equal_shares_cannot_exceed_the_members() -> None:
    with pytest.raises(ConfigError, match="cannot split 7 picks"):
        equal_shares(np.array([3, 3]), 7, np.random.default_rng(0))


def _class_pool(counts: list[int]) -> np.ndarray:
    """Rows whose argmax is class c for counts[c] consecutive rows."""
    labels = np.repeat(np.arange(len(counts)), counts)
    probs = np.full((labels.size, len(counts)), 0.1, dtype=np.float32)
    probs[np.arange(labels.size), labels] = 0.8
    return probs / probs.sum(axis=1, keepdims=True)


def test_uniform_takes_an_equal_share_per_predicted_class() -> None:
    probs = _class_pool([10, 10, 10, 10])
    chosen = ClassBalanced().select(
        probs, np.array([], dtype=np.int64), np.arange(40), 8, np.random.default_rng(1)
    )
    np.testing.assert_array_equal(np.bincount(probs[chosen].argmax(axis=1), minlength=4), [2, 2, 2, 2])


def test_uniform_redistributes_the_share_of_a_small_class() -> None:
    probs = _class_pool([2, 10, 10])
    for seed in range(5):
        chosen = ClassBalanced().select(
            probs, np.empty(0, np.int64), np.arange(22), 9, np.random.default_rng(seed)
        )
        per_class = np.bincount(probs[chosen].argmax(axis=1), minlength=3)
        assert per_class[0] == 2  # all the small class has
        assert sorted(per_class[1:]) == [3, 4]  # 3 each, plus the 1 left over to one of them


def test_uniform_only_counts_candidates_not_labelled_points() -> None:
    probs = _class_pool([6, 6])
    labelled = np.arange(4)  # four of class 0 are labelled: two class-0 candidates remain
    chosen = ClassBalanced().select(probs, labelled, np.arange(4, 12), 6, np.random.default_rng(0))
    np.testing.assert_array_equal(np.bincount(probs[chosen].argmax(axis=1)), [2, 4])


def test_uniform_is_random_within_a_class() -> None:
    probs = _class_pool([50, 50])
    draws = {
        tuple(
            np.sort(
                ClassBalanced().select(
                    probs, np.empty(0, np.int64), np.arange(100), 4, np.random.default_rng(s)
                )
            )
        )
        for s in range(5)
    }
    assert len(draws) > 1


def test_random_uses_the_given_generator(make_pool: Callable) -> None:
    pool = make_pool()
    results = {
        tuple(RandomChoice().select(pool.probs, pool.labelled, pool.candidates, 5, np.random.default_rng(s)))
        for s in range(5)
    }
    assert len(results) == 5
