"""The query ledger: every answer the target gave, persisted (SQLite) before anything uses it.

Keyed by pool index. Re-asking an answered index is served from here and never paid again; reopening a
ledger restores the used budget. Requests are recorded *before* they are sent (pending), with their id,
so a crash between the target's answer and our write can be recovered with the same request id.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from activethief.errors import OracleError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS answers (
    pool_index INTEGER PRIMARY KEY,
    answer BLOB NOT NULL,
    round INTEGER NOT NULL,
    mode TEXT NOT NULL,
    request_id TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY,
    pool_indices TEXT NOT NULL,
    round INTEGER NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS evaluation_answers (
    set_id TEXT NOT NULL,
    item INTEGER NOT NULL,
    answer BLOB NOT NULL,
    request_id TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (set_id, item)
);
CREATE TABLE IF NOT EXISTS evaluation_requests (
    request_id TEXT PRIMARY KEY,
    set_id TEXT NOT NULL,
    items TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL
);
"""


class Ledger:
    """A SQLite file (or ':memory:') holding answers by pool index, pending requests and run metadata."""

    def __init__(self, path: Path | str = ":memory:") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise OracleError(f"{self.path} is not a usable query ledger: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    # --- metadata -------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def bind(self, key: str, value: str, what: str) -> None:
        """Record `value` under `key`, or check it equals what an earlier run recorded."""
        old = self.get_meta(key)
        if old is None:
            self.set_meta(key, value)
        elif old != value:
            raise OracleError(
                f"ledger {self.path} was written with {what} {old!r}, not {value!r}; "
                "use a new ledger (or output folder) for a different setting"
            )

    # --- answers --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def lookup(self, indices: Iterable[int]) -> dict[int, np.ndarray]:
        """Recorded answers for those of `indices` that have one."""
        found: dict[int, np.ndarray] = {}
        idx = [int(i) for i in indices]
        for start in range(0, len(idx), 900):  # SQLite's bound-parameter limit
            chunk = idx[start : start + 900]
            marks = ",".join("?" * len(chunk))
            for key, blob in self._db.execute(
                f"SELECT pool_index, answer FROM answers WHERE pool_index IN ({marks})", chunk
            ):
                found[int(key)] = np.frombuffer(blob, dtype=np.float32).copy()
        return found

    def all_answers(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(pool indices, answers [n, C], rounds), in ascending pool-index order (the table's rowid)."""
        rows = self._db.execute("SELECT pool_index, answer, round FROM answers ORDER BY rowid").fetchall()
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
        keys = np.array([r[0] for r in rows], dtype=np.int64)
        answers = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
        rounds = np.array([r[2] for r in rows], dtype=np.int64)
        return keys, answers, rounds

    def query_order(self) -> np.ndarray:
        """Pool indices in the order they were sent (int64): the answered requests in the order they were
        begun, each request's indices as sent, every index once. What a detector watching the target's
        traffic (PRADA) saw; `all_answers` gives pool-index order instead."""
        rows = self._db.execute(
            "SELECT pool_indices FROM requests WHERE status = 'done' ORDER BY rowid"
        ).fetchall()
        sent = [int(i) for (indices,) in rows for i in json.loads(indices)]
        return np.array(list(dict.fromkeys(sent)), dtype=np.int64)

    # --- requests -------------------------------------------------------------------------------
    def begin(self, request_id: str, indices: np.ndarray, round_: int) -> None:
        """Record a request as pending before it is sent."""
        self._db.execute(
            "INSERT INTO requests (request_id, pool_indices, round, status, created) "
            "VALUES (?, ?, ?, 'pending', ?)",
            (request_id, json.dumps([int(i) for i in indices]), round_, time.time()),
        )

    def complete(
        self, request_id: str, indices: np.ndarray, answers: np.ndarray, round_: int, mode: str
    ) -> None:
        """Store a request's answers and mark it done, in one transaction."""
        now = time.time()
        rows = [
            (int(i), np.ascontiguousarray(a, dtype=np.float32).tobytes(), round_, mode, request_id, now)
            for i, a in zip(indices, answers, strict=True)
        ]
        with self._transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO answers (pool_index, answer, round, mode, request_id, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            self._db.execute("UPDATE requests SET status = 'done' WHERE request_id = ?", (request_id,))

    def pending(self) -> list[tuple[str, np.ndarray, int]]:
        """Requests recorded as sent but never completed: (request id, pool indices, round)."""
        rows = self._db.execute(
            "SELECT request_id, pool_indices, round FROM requests WHERE status = 'pending' ORDER BY created"
        ).fetchall()
        return [(str(r[0]), np.array(json.loads(r[1]), dtype=np.int64), int(r[2])) for r in rows]

    def pending_count(self) -> int:
        return sum(len(indices) for _, indices, _ in self.pending())

    def abandon(self, request_id: str) -> None:
        """Mark a pending request as never answered (the target refused it before billing)."""
        self._db.execute("UPDATE requests SET status = 'failed' WHERE request_id = ?", (request_id,))

    # --- evaluation answers ---------------------------------------------------------------------
    # Answers bought on an evaluation set (a test set, to measure agreement), apart from the pool's:
    # keyed by (set id, item), with their own pending requests, so they are counted, never bought twice,
    # and reported separately from the stealing queries.
    def evaluation_answers(self, set_id: str) -> dict[int, np.ndarray]:
        """Recorded answers of the evaluation set `set_id`, by item."""
        rows = self._db.execute(
            "SELECT item, answer FROM evaluation_answers WHERE set_id = ?", (set_id,)
        ).fetchall()
        return {int(item): np.frombuffer(blob, dtype=np.float32).copy() for item, blob in rows}

    def begin_evaluation(self, request_id: str, set_id: str, items: np.ndarray) -> None:
        """Record an evaluation request as pending before it is sent."""
        self._db.execute(
            "INSERT INTO evaluation_requests (request_id, set_id, items, status, created) "
            "VALUES (?, ?, ?, 'pending', ?)",
            (request_id, set_id, json.dumps([int(i) for i in items]), time.time()),
        )

    def complete_evaluation(
        self, request_id: str, set_id: str, items: np.ndarray, answers: np.ndarray
    ) -> None:
        """Store an evaluation request's answers and mark it done, in one transaction."""
        now = time.time()
        rows = [
            (set_id, int(i), np.ascontiguousarray(a, dtype=np.float32).tobytes(), request_id, now)
            for i, a in zip(items, answers, strict=True)
        ]
        with self._transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO evaluation_answers (set_id, item, answer, request_id, created) "
                "VALUES (?, ?, ?, ?, ?)",
                rows,
            )
            self._db.execute(
                "UPDATE evaluation_requests SET status = 'done' WHERE request_id = ?", (request_id,)
            )

    def pending_evaluations(self) -> list[tuple[str, str, np.ndarray]]:
        """Evaluation requests sent but never completed: (request id, set id, items)."""
        rows = self._db.execute(
            "SELECT request_id, set_id, items FROM evaluation_requests WHERE status = 'pending' "
            "ORDER BY created"
        ).fetchall()
        return [(str(r[0]), str(r[1]), np.array(json.loads(r[2]), dtype=np.int64)) for r in rows]

    def abandon_evaluation(self, request_id: str) -> None:
        """Mark a pending evaluation request as never answered (refused before billing)."""
        self._db.execute(
            "UPDATE evaluation_requests SET status = 'failed' WHERE request_id = ?", (request_id,)
        )

    def evaluation_count(self) -> int:
        """Evaluation queries paid for: stored answers plus pending requests (which may have been billed)."""
        stored = int(self._db.execute("SELECT COUNT(*) FROM evaluation_answers").fetchone()[0])
        return stored + sum(len(items) for _, _, items in self.pending_evaluations())

    # --- counters -------------------------------------------------------------------------------
    def add_unkeyed(self, count: int) -> None:
        """Count queries that have no pool index (e.g. adversarial images)."""
        self.set_meta("unkeyed_queries", str(self.unkeyed() + count))

    def unkeyed(self) -> int:
        return int(self.get_meta("unkeyed_queries") or 0)

    def _transaction(self) -> _Tx:
        return _Tx(self._db)


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
