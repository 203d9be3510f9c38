"""A circuit breaker per endpoint: stop calling an endpoint that keeps failing.

After ``threshold`` consecutive failures the circuit opens for a window; jobs that come up
meanwhile are delayed to the window's end without spending an attempt. Then one call probes
the endpoint: success closes the circuit, failure reopens it for twice as long (capped).
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"
MAX_WINDOW = 300.0


@attrs.define
class CircuitBreaker:
    clock: Callable[[], float]
    threshold: int = 5
    base_window: float = 5.0
    failures: int = 0
    opened_at: float | None = None
    window: float = 0.0
    probing: bool = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return CLOSED
        return OPEN if self.clock() < self.opened_at + self.window else HALF_OPEN

    def allow(self) -> bool:
        """May a call go out now? In half-open state only one probe at a time."""
        state = self.state
        if state == CLOSED:
            return True
        if state == HALF_OPEN and not self.probing:
            self.probing = True
            return True
        return False

    def retry_in(self) -> float:
        """Seconds until a call may be tried again."""
        if self.opened_at is None:
            return 0.0
        return max(self.opened_at + self.window - self.clock(), 0.0) or self.base_window / 10

    def record(self, healthy: bool) -> None:
        if healthy:
            self.failures = 0
            self.opened_at = None
            self.window = 0.0
            self.probing = False
            return
        self.failures += 1
        if self.probing:
            self.probing = False
            self._open(min(self.window * 2, MAX_WINDOW))
        elif self.opened_at is None and self.failures >= self.threshold:
            self._open(self.base_window)

    def _open(self, window: float) -> None:
        self.opened_at = self.clock()
        self.window = window
