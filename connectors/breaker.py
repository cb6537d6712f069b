"""A failure circuit breaker: N failures within M seconds open it; after a cooldown it half-opens
and lets one call through; success closes it, failure opens it again."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Counts failures in a sliding window."""

    def __init__(
        self,
        name: str,
        threshold: int,
        window_s: float,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._threshold = threshold
        self._window = window_s
        self._cooldown = cooldown_s
        self._clock = clock
        self._failures: deque[float] = deque()
        self._opened_at: float | None = None
        self._probing = False
        self.last_reason = ""

    @property
    def state(self) -> BreakerState:
        """closed, open, or half_open (cooldown over, one probe allowed)."""
        if self._opened_at is None:
            return "closed"
        return "half_open" if self._clock() - self._opened_at >= self._cooldown else "open"

    def allow(self) -> bool:
        """May a call be made now? In half-open state exactly one probe is let through."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._probing:
            self._probing = True
            return True
        return False

    def record_success(self) -> None:
        """A call worked: close."""
        self._failures.clear()
        self._opened_at = None
        self._probing = False

    def end_probe(self) -> None:
        """A call ended without telling whether the service works (refused for good, or a bug): let the
        next call probe. Without this a half-open breaker would wait forever for the verdict of a probe
        that never gives one."""
        self._probing = False

    def record_failure(self, reason: str) -> bool:
        """A call failed. Returns True when this failure opened the breaker."""
        now = self._clock()
        self.last_reason = reason
        if self._probing or self.state != "closed":
            self._opened_at = now  # the probe failed: open again for a full cooldown
            self._probing = False
            return False
        self._failures.append(now)
        while self._failures and now - self._failures[0] > self._window:
            self._failures.popleft()
        if len(self._failures) >= self._threshold:
            self._opened_at = now
            self._failures.clear()
            return True
        return False
