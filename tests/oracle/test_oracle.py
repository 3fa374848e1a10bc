"""Output modes, budget and the ledger: answers persisted, never paid twice, budget restored on reopen."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from activethief import BudgetExceededError, CallableOracle
from activethief.errors import ConfigError, OracleError
from activethief.oracle import OutputMode, answers_to_targets

PROBS = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]], dtype=np.float32)


class CountingTarget:
    """A deterministic 3-class target that counts every image it is asked about."""

    def __init__(self) -> None:
        self.calls = 0
        self.images = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.images += len(x)
        s = x.reshape(len(x), -1).mean(1)
        logits = np.stack([s, 1 - s, np.full_like(s, 0.5)], 1) * 5
        e = np.exp(logits - logits.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)


@pytest.fixture()
def pool() -> np.ndarray:
    return np.random.default_rng(0).random((50, 1, 28, 28), dtype=np.float32)


def test_output_modes() -> None:
    assert np.allclose(OutputMode.parse("probs").apply(PROBS), PROBS)
    assert np.array_equal(OutputMode.parse("label").apply(PROBS), [[0, 1, 0], [1, 0, 0]])
    assert np.allclose(OutputMode.parse("topk:2").apply(PROBS), [[0, 0.6, 0.3], [0.5, 0, 0.3]])
    assert np.allclose(OutputMode.parse("round:0").apply(PROBS), [[0, 1, 0], [0, 0, 0]])
    assert np.allclose(OutputMode.parse("round:1").apply(PROBS), [[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]])
    assert OutputMode.parse("label").hard and OutputMode.parse("topk:1").hard
    assert not OutputMode.parse("topk:2").hard
    for bad in ("top5", "topk:0", "round:-1", "logits", ""):
        with pytest.raises(ConfigError, match="output mode"):
            OutputMode.parse(bad)


def test_answers_to_targets_spreads_the_missing_mass_and_handles_empty_rows() -> None:
    targets = answers_to_targets(np.array([[0, 0.6, 0.3], [0, 0, 0]], dtype=np.float32))
    assert np.allclose(targets.sum(1), 1)
    assert np.allclose(targets[0], [0.1, 0.6, 0.3])  # the unseen 0.1 goes to the class shown as zero
    assert np.allclose(targets[1], 1 / 3)  # a row of zeros reveals nothing: uniform


def test_budget_exhaustion_is_clear(pool: np.ndarray) -> None:
    oracle = CallableOracle(CountingTarget(), 3, budget=10)
    oracle.query(pool[:8], keys=np.arange(8))
    with pytest.raises(BudgetExceededError, match="8 of 10 queries used, 5 more asked"):
        oracle.query(pool[8:13], keys=np.arange(8, 13))
    assert oracle.used == 8 and oracle.remaining == 2


def test_reasking_is_free_and_identical(pool: np.ndarray) -> None:
    target = CountingTarget()
    oracle = CallableOracle(target, 3, budget=10)
    first = oracle.query(pool[:5], keys=np.arange(5))
    again = oracle.query(pool[[4, 3, 9]], keys=np.array([4, 3, 9]))
    assert np.array_equal(again[:2], first[[4, 3]])
    assert target.images == 6 and oracle.used == 6


@pytest.mark.parametrize("mode", ["probs", "topk:1", "label", "round:2"])
def test_ledger_survives_reopen(tmp_path: Path, pool: np.ndarray, mode: str) -> None:
    path = tmp_path / "ledger.sqlite"
    target = CountingTarget()
    oracle = CallableOracle(target, 3, mode=mode, budget=20, ledger=path)
    answers = oracle.query(pool[:12], keys=np.arange(12), round=0)
    assert np.allclose(answers, OutputMode.parse(mode).apply(CountingTarget()(pool[:12])), atol=1e-6)
    oracle.close()

    reopened = CallableOracle(target, 3, mode=mode, budget=20, ledger=path)
    assert reopened.used == 12 and reopened.remaining == 8
    calls = target.calls
    assert np.array_equal(reopened.query(pool[:12], keys=np.arange(12)), answers)
    assert target.calls == calls  # served from the ledger, the target was not asked again
    keys, stored = reopened.answered()
    assert np.array_equal(keys, np.arange(12)) and np.array_equal(stored, answers)


def test_ledger_refuses_other_mode(tmp_path: Path, pool: np.ndarray) -> None:
    path = tmp_path / "ledger.sqlite"
    CallableOracle(CountingTarget(), 3, ledger=path).query(pool[:2], keys=np.arange(2))
    with pytest.raises(OracleError, match="output mode"):
        CallableOracle(CountingTarget(), 3, mode="label", ledger=path)


def test_failed_local_call_is_not_charged(pool: np.ndarray) -> None:
    def broken(x: np.ndarray) -> np.ndarray:
        raise RuntimeError("target down")

    oracle = CallableOracle(broken, 3, budget=5)
    with pytest.raises(RuntimeError):
        oracle.query(pool[:3], keys=np.arange(3))
    assert oracle.used == 0


def test_crash_between_answer_and_write_is_recovered(tmp_path: Path, pool: np.ndarray) -> None:
    path = tmp_path / "ledger.sqlite"
    oracle = CallableOracle(CountingTarget(), 3, budget=10, ledger=path)
    oracle.ledger.begin("req-1", np.arange(4), 0)  # sent, then the process died
    assert oracle.used == 4  # in-flight requests count: they may have been billed
    assert oracle.recover(pool) == 4
    assert oracle.used == 4 and len(oracle.ledger) == 4 and not oracle.ledger.pending()


def test_bad_images_and_answers(pool: np.ndarray) -> None:
    oracle = CallableOracle(CountingTarget(), 3)
    with pytest.raises(OracleError, match="shape"):
        oracle.query(np.zeros((2, 3, 28, 28), np.float32))
    with pytest.raises(OracleError, match=r"\[0, 1\]"):
        oracle.query(pool[:2] * 255)
    with pytest.raises(OracleError, match="NaN"):
        oracle.query(np.full((1, 1, 28, 28), np.nan, np.float32))
    with pytest.raises(OracleError, match="keys"):
        oracle.query(pool[:2], keys=np.arange(3))
    wrong = CallableOracle(lambda x: np.ones((len(x), 4)), 3)
    with pytest.raises(OracleError, match="expected"):
        wrong.query(pool[:2])


def test_unkeyed_queries_are_counted(pool: np.ndarray) -> None:
    oracle = CallableOracle(CountingTarget(), 3, budget=5)
    oracle.query(pool[:3])
    assert oracle.used == 3
    with pytest.raises(BudgetExceededError):
        oracle.query(pool[:3])


def test_a_callable_is_never_asked_for_free(pool: np.ndarray) -> None:
    target = CountingTarget()
    assert CallableOracle(target, 3).evaluate(pool[:5]) is None and target.images == 0
    owned = CallableOracle(target, 3, free_evaluation=True)
    assert owned.free_evaluation and owned.evaluate(pool[:5]) is not None
    assert target.images == 5 and owned.used == 0  # the user's own model: free by their say-so


def test_bought_evaluation_is_counted_apart_and_never_bought_twice(tmp_path: Path, pool: np.ndarray) -> None:
    path = tmp_path / "ledger.sqlite"
    target = CountingTarget()
    oracle = CallableOracle(target, 3, budget=20, ledger=path)
    oracle.query(pool[:4], keys=np.arange(4))
    answers = oracle.buy_evaluation(pool[10:16], set_id="test:a")
    assert answers.shape == (6, 3) and np.allclose(answers, target(pool[10:16]))
    assert (oracle.used, oracle.evaluation_used, len(oracle.ledger)) == (10, 6, 4)
    target.images = 0
    reopened = CallableOracle(target, 3, budget=20, ledger=path)
    assert np.array_equal(reopened.buy_evaluation(pool[10:16], set_id="test:a"), answers)
    assert target.images == 0 and reopened.used == 10
    with pytest.raises(BudgetExceededError):
        reopened.buy_evaluation(pool[20:31], set_id="test:b")  # 11 more would pass the budget of 20
    assert reopened.used == 10


def test_a_pending_evaluation_request_is_replayed_not_rebought(tmp_path: Path, pool: np.ndarray) -> None:
    path = tmp_path / "ledger.sqlite"
    target = CountingTarget()
    oracle = CallableOracle(target, 3, ledger=path)
    oracle.ledger.begin_evaluation("eval-1", "test:a", np.arange(3))  # sent, then the process died
    assert oracle.evaluation_used == 3  # it may have been billed
    oracle.buy_evaluation(pool[:5], set_id="test:a")
    assert target.calls == 2 and target.images == 5  # the replay (3) and the rest (2)
    assert oracle.evaluation_used == 5 and not oracle.ledger.pending_evaluations()
