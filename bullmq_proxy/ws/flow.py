"""Flow control for one socket: what to do when the client reads slower than we write.

The transport asks its registered producer to pause when its write buffer is full. While
paused, outgoing frames wait in the ``Outbox``; past ``limit`` bytes the socket is closed,
so a slow client can never make the proxy's memory grow without bound.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer


@implementer(IPushProducer)
class Outbox:
    """Registered as the transport's producer; ``send`` every outgoing frame through it."""

    def __init__(
        self,
        write: Callable[[bytes], None],
        limit: int,
        overflow: Callable[[int], None],
        congested: Callable[[bool], None],
    ) -> None:
        self._write = write
        self._limit = limit
        self._overflow = overflow
        self._congested = congested
        self._waiting: deque[bytes] = deque()
        self.queued = 0
        self.paused = False
        self.stopped = False

    def send(self, payload: bytes) -> None:
        if self.stopped:
            return
        if not self.paused and not self._waiting:
            self._write(payload)
            return
        self._waiting.append(payload)
        self.queued += len(payload)
        if self.queued > self._limit:
            queued = self.queued
            self.stopProducing()
            self._overflow(queued)

    def pauseProducing(self) -> None:
        if not self.paused:
            self.paused = True
            self._congested(True)

    def resumeProducing(self) -> None:
        self.paused = False
        while self._waiting and not self.paused and not self.stopped:
            payload = self._waiting.popleft()
            self.queued -= len(payload)
            self._write(payload)
        if not self.paused and not self.stopped:
            self._congested(False)

    def stopProducing(self) -> None:
        self.stopped = True
        self._waiting.clear()
        self.queued = 0


class ReadValve:
    """Stops reading the socket while any reason to hold back holds (congestion, too many
    commands in flight); TCP then pushes back on the client."""

    def __init__(self, pause: Callable[[], None], resume: Callable[[], None]) -> None:
        self._pause = pause
        self._resume = resume
        self._reasons: set[str] = set()

    def hold(self, reason: str, holding: bool) -> None:
        was_holding = bool(self._reasons)
        if holding:
            self._reasons.add(reason)
        else:
            self._reasons.discard(reason)
        if bool(self._reasons) != was_holding:
            (self._pause if self._reasons else self._resume)()
