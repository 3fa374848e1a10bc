"""Connection hygiene for the HTTP server: header, idle and write timeouts, a connection cap, and a
rate-limited log for a flooded accept loop, so one unauthenticated client cannot lock everyone out.

uvicorn closes idle keep-alive connections, but a fresh connection that sends nothing, or sends its
request head a byte at a time, or never reads its answer, stays open forever; and with enough of them
the process runs out of file descriptors and stops accepting. `guarded_protocol` wraps uvicorn's h11
protocol: every connection must send a complete request head within `header_timeout` of opening (or of
its previous answer), a connection that does not read its answer for `write_timeout` is dropped, and at
most `max_connections` are open at once. When a new connection would pass the cap, the connection that
has waited longest without a request in progress is closed to make room (none idle: the new one is
refused), so honest clients get in while someone holds many idle sockets. Request bodies are timed in
the web layer (`body_timeout`, a 408).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("activethief.serve")


@dataclass(frozen=True)
class ConnectionLimits:
    """Timeouts (seconds) and the connection cap; the defaults suit a service on the open internet.

    Args:
        header_timeout: a request head must arrive within this long of opening or of the last answer.
        keep_alive: an idle keep-alive connection is closed after this long (uvicorn's timeout).
        body_timeout: the whole request body must arrive within this long of its head (else 408).
        write_timeout: a client that reads none of its answer for this long is dropped.
        max_connections: most connections open at once (the oldest idle one makes room for a new one).
    """

    header_timeout: float = 10.0
    keep_alive: float = 5.0
    body_timeout: float = 60.0
    write_timeout: float = 30.0
    max_connections: int = 512

    def __post_init__(self) -> None:
        timeouts = (self.header_timeout, self.keep_alive, self.body_timeout, self.write_timeout)
        if min(timeouts) <= 0 or self.max_connections < 1:
            raise ValueError("connection timeouts must be > 0 and max_connections >= 1")


class ConnectionGuard:
    """The open connections of one server, oldest first, and what the cap has done (for tests, logs)."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.open: OrderedDict[GuardedH11Protocol, None] = OrderedDict()
        self.evicted = 0
        self.refused = 0
        self.timed_out = 0

    def admit(self, connection: GuardedH11Protocol) -> bool:
        """Register a new connection; make room by closing the oldest idle one; False: refuse it."""
        if len(self.open) >= self.limits.max_connections:
            idle = next((c for c in self.open if not c.busy), None)
            if idle is None:
                self.refused += 1
                return False
            self.evicted += 1
            idle.drop()
        self.open[connection] = None
        return True

    def forget(self, connection: GuardedH11Protocol) -> None:
        self.open.pop(connection, None)

    def touch(self, connection: GuardedH11Protocol) -> None:
        """A connection just finished an answer: it becomes the youngest idle one."""
        if connection in self.open:
            self.open.move_to_end(connection)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with header and write timeouts, under a ConnectionGuard's cap."""

    guard: ConnectionGuard  # set by `guarded_protocol`

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.access_log = False  # uvicorn's access log shows query strings; the web layer logs instead
        self.busy = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self._cycle_seen: object = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self.guard.admit(self):
            self.drop()
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.forget(self)
        self._cancel_timers()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and self.cycle is not self._cycle_seen:  # a request head arrived
            self._cycle_seen = self.cycle
            self.busy = True
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

    def on_response_complete(self) -> None:
        self.busy = False
        self.guard.touch(self)
        if not self.transport.is_closing():
            self._arm_head_timer()
        super().on_response_complete()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self.guard.limits.write_timeout, self._timed_out)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def drop(self) -> None:
        """Close at once, without a response (the client was idle, too slow, or over the cap)."""
        self.guard.forget(self)  # at once: connection_lost comes a loop iteration later
        self._cancel_timers()
        if not self.transport.is_closing():
            self.transport.abort()

    def _arm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(self.guard.limits.header_timeout, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.busy:
            self._timed_out()

    def _timed_out(self) -> None:
        self.guard.timed_out += 1
        self.drop()

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._write_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._write_timer = None


def guarded_protocol(guard: ConnectionGuard) -> type[GuardedH11Protocol]:
    """A protocol class for `uvicorn.Config(http=...)` whose connections live under `guard`."""
    return type("Guarded", (GuardedH11Protocol,), {"guard": guard})


def ensure_descriptors(max_connections: int, spare: int = 64) -> int:
    """Raise the soft open-files limit to fit `max_connections` plus `spare` if the hard limit allows;
    return the number of connections that fit (the cap to use)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + spare
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new_soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
            soft = new_soft
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return max_connections
    return max(1, min(max_connections, soft - spare))


class RateLimitedLog(logging.Filter):
    """Lets a flood of one log message through once per `every` seconds, without its traceback, with
    a count of the ones held back (asyncio logs every failed accept() when descriptors run out)."""

    def __init__(self, prefix: str, every: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.prefix, self.every, self.clock = prefix, every, clock
        self._last = -float("inf")
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith(self.prefix):
            return True
        now = self.clock()
        if now - self._last < self.every:
            self.suppressed += 1
            return False
        self._last = now
        held, self.suppressed = self.suppressed, 0
        record.msg = f"{self.prefix} (too many open connections or files; {held} more like this held back)"
        record.args, record.exc_info, record.exc_text = None, None, None
        return True


ACCEPT_FLOOD = "socket.accept() out of system resource"
