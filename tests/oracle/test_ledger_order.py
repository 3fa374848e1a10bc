"""`Ledger.query_order`: the pool indices in the order they were sent, what a traffic monitor sees."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from activethief.oracle import CallableOracle
from activethief.oracle.ledger import Ledger


def _uniform(images: np.ndarray) -> np.ndarray:
    return np.full((len(images), 3), 1 / 3, dtype=np.float32)


def test_query_order_is_the_send_order_not_the_index_order(tmp_path: Path) -> None:
    pool = np.random.default_rng(0).random((20, 1, 28, 28), dtype=np.float32)
    oracle = CallableOracle(_uniform, num_classes=3, ledger=tmp_path / "ledger.sqlite")
    oracle.query(pool[[9, 2, 5]], keys=np.array([9, 2, 5]), round=0)
    oracle.query(pool[[5, 7, 1]], keys=np.array([5, 7, 1]), round=1)  # 5 is answered from the ledger
    assert oracle.ledger.query_order().tolist() == [9, 2, 5, 7, 1]
    assert oracle.answered()[0].tolist() == [1, 2, 5, 7, 9]
    oracle.close()
    # The order survives reopening the ledger (a resumed run sees the whole stream).
    reopened = Ledger(tmp_path / "ledger.sqlite")
    assert reopened.query_order().tolist() == [9, 2, 5, 7, 1]
    reopened.close()


def test_pending_requests_are_not_in_the_order() -> None:
    ledger = Ledger(":memory:")
    ledger.begin("a", np.array([3, 4]), 0)
    assert ledger.query_order().tolist() == []
    ledger.complete("a", np.array([3, 4]), np.ones((2, 3), np.float32), 0, "probs")
    assert ledger.query_order().tolist() == [3, 4]
