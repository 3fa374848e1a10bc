"""A token bucket counting images: `rate` images per second on average, bursts up to `capacity`."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class TokenBucket:
    """Thread-safe token bucket. `take(n)` spends n tokens or says how long to wait for them.

    Args:
        rate: tokens (images) added per second.
        capacity: most tokens held; a full bucket allows a burst of this many images.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(self, rate: float, capacity: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError(f"rate and capacity must be > 0, got {rate} and {capacity}")
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._tokens = capacity
        self._stamp = clock()
        self._lock = threading.Lock()

    def take(self, count: int) -> float:
        """Spend `count` tokens and return 0, or spend nothing and return the seconds until they exist.

        A request larger than the capacity can never pass; callers should refuse it up front.
        """
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if count <= self._tokens:
                self._tokens -= count
                return 0.0
            return (count - self._tokens) / self.rate

    @staticmethod
    def retry_after(wait: float) -> int:
        """A `Retry-After` header value: whole seconds, at least 1."""
        return max(1, math.ceil(wait))
