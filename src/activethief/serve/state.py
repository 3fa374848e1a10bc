"""What the server must never forget: images billed per key, and the answers to each request id.

One SQLite file. Billing and recording a request's answer happen in one transaction, so a budget is
never overspent however many requests race, and a request id is billed at most once, even across
restarts. Answers are stored as the key saw them (output mode applied), to replay them verbatim.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from activethief.errors import ConfigError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (key_name TEXT PRIMARY KEY, used INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS replies (
    key_name TEXT NOT NULL,
    request_id TEXT NOT NULL,
    images INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    classes INTEGER NOT NULL,
    answers BLOB NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (key_name, request_id)
);
"""


@dataclass(frozen=True)
class StoredReply:
    """A request answered before: the fingerprint of its inputs and the answers [n, C] it got."""

    fingerprint: str
    answers: np.ndarray


@dataclass
class _Ticket:
    """One charge waiting to be committed, and its outcome once it was."""

    key_name: str
    count: int
    budget: int | None
    answers: np.ndarray
    request_id: str | None
    fingerprint: str
    done: bool = False
    earlier: StoredReply | None = None
    error: Exception | None = None


class BudgetRefused(Exception):
    """Serving the request would spend more than the key's budget; nothing was billed."""

    def __init__(self, used: int, asked: int, budget: int) -> None:
        self.used, self.asked, self.budget = used, asked, budget
        super().__init__(f"{used} of {budget} images used, {asked} more asked")


class UsageStore:
    """Persistent per-key usage and idempotency records (SQLite; ':memory:' for throw-away servers)."""

    def __init__(self, path: Path | str = ":memory:") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a billed request survives a power cut
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{self.path} is not a usable server state file: {exc}") from None
        self._lock = threading.Lock()  # the connection: one user at a time
        self._queue_lock = threading.Lock()
        self._queue: list[_Ticket] = []

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> UsageStore:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def used(self, key_name: str) -> int:
        """Images billed to this key so far."""
        with self._lock:
            return self._used(key_name)

    def usage(self) -> dict[str, int]:
        """Images billed, by key name."""
        with self._lock:
            return {str(k): int(v) for k, v in self._db.execute("SELECT key_name, used FROM usage")}

    def lookup(self, key_name: str, request_id: str) -> StoredReply | None:
        """The stored reply to this key's request id, if it was answered before."""
        with self._lock:
            return self._lookup(key_name, request_id)

    def charge(
        self,
        key_name: str,
        count: int,
        *,
        budget: int | None,
        answers: np.ndarray,
        request_id: str | None = None,
        fingerprint: str = "",
    ) -> StoredReply | None:
        """Bill `count` images and record the answers under `request_id`, atomically and durably.

        Returns None when billed, or the earlier reply when `request_id` was answered meanwhile (a racing
        duplicate; nothing billed). Raises BudgetRefused, billing nothing, when the budget does not cover
        `count`.

        Group commit: charges that arrive while another commit is being written to disk wait, and the
        next of them commits them all in one transaction (one fsync), each checked in arrival order.
        """
        ticket = _Ticket(key_name, count, budget, np.ascontiguousarray(answers, dtype=np.float32), request_id,
                         fingerprint)  # fmt: skip
        with self._queue_lock:
            self._queue.append(ticket)
        with self._lock:
            if not ticket.done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._commit(batch)
        if ticket.error is not None:
            raise ticket.error
        return ticket.earlier

    def _commit(self, batch: list[_Ticket]) -> None:
        """Apply the tickets in order in one transaction; each gets its own outcome."""
        try:
            self._db.execute("BEGIN IMMEDIATE")  # also serialises other processes sharing the file
            try:
                for ticket in batch:
                    self._apply(ticket)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except Exception as exc:  # the disk said no: nothing of this batch was billed
            for ticket in batch:
                ticket.earlier, ticket.error = None, exc
        finally:
            for ticket in batch:
                ticket.done = True

    def _apply(self, ticket: _Ticket) -> None:
        if ticket.request_id is not None:
            ticket.earlier = self._lookup(ticket.key_name, ticket.request_id)
            if ticket.earlier is not None:
                return
        used = self._used(ticket.key_name)
        if ticket.budget is not None and used + ticket.count > ticket.budget:
            ticket.error = BudgetRefused(used, ticket.count, ticket.budget)
            return
        self._db.execute(
            "INSERT INTO usage (key_name, used) VALUES (?, ?) "
            "ON CONFLICT(key_name) DO UPDATE SET used = used + excluded.used",
            (ticket.key_name, ticket.count),
        )
        if ticket.request_id is not None:
            self._db.execute(
                "INSERT INTO replies (key_name, request_id, images, fingerprint, classes, answers, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (ticket.key_name, ticket.request_id, ticket.count, ticket.fingerprint,
                 ticket.answers.shape[1], ticket.answers.tobytes(), time.time()),
            )  # fmt: skip

    def _used(self, key_name: str) -> int:
        row = self._db.execute("SELECT used FROM usage WHERE key_name = ?", (key_name,)).fetchone()
        return 0 if row is None else int(row[0])

    def _lookup(self, key_name: str, request_id: str) -> StoredReply | None:
        row = self._db.execute(
            "SELECT fingerprint, images, classes, answers FROM replies WHERE key_name = ? AND request_id = ?",
            (key_name, request_id),
        ).fetchone()
        if row is None:
            return None
        answers = np.frombuffer(row[3], dtype=np.float32).reshape(int(row[1]), int(row[2])).copy()
        return StoredReply(fingerprint=str(row[0]), answers=answers)
