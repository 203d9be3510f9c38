"""Time limits that many waits share, kept with one timer instead of one timer each.

Every call to one endpoint gets the same timeout, so the calls' deadlines fall due in the
order they were set. An insertion-ordered dict is then a queue sorted by deadline, and one
reactor timer, set for the oldest entry, does the work of a ``DelayedCall`` armed and
cancelled for every call: on the asyncio reactor each of those also moves the loop's own
timer, and together they cost about a tenth of a processed job's CPU (benchmarks/README.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

log = Logger()


class SharedDeadline:
    """Calls an entry's ``expire`` once ``limit`` seconds have passed since it was added,
    unless it was discarded first."""

    def __init__(self, clock: IReactorTime, limit: float) -> None:
        self._clock = clock
        self.limit = limit
        self._entries: dict[object, tuple[float, Callable[[], Any]]] = {}
        self._timer: IDelayedCall | None = None
        self._expiring = False

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, key: object, expire: Callable[[], Any]) -> None:
        # Added again, an entry keeps its place and its first deadline.
        self._entries.setdefault(key, (self._clock.seconds() + self.limit, expire))
        # An expiry that adds an entry leaves the timer to ``_due``, which sets it for the
        # oldest entry left (a timer set here would be for the newest).
        if self._timer is None and not self._expiring:
            self._timer = self._clock.callLater(self.limit, self._due)

    def discard(self, key: object) -> None:
        """Forget ``key``; the timer stays, and finds the next deadline when it fires."""
        self._entries.pop(key, None)

    def _due(self) -> None:
        self._timer = None
        self._expiring = True
        try:
            now = self._clock.seconds()
            while self._entries:
                key = next(iter(self._entries))
                due, expire = self._entries[key]
                if due > now:
                    self._timer = self._clock.callLater(due - now, self._due)
                    return
                del self._entries[key]
                try:
                    expire()
                except Exception:
                    # One entry's failure must not leave the others without their deadline.
                    log.failure("A deadline's expiry failed")
        finally:
            self._expiring = False
