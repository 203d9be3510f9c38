"""SIGHUP rereads what can change without a restart: the token file. Connections stay
open; WebSocket sockets whose token is no longer accepted are closed (4401)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service

from bullmq_proxy.logs import Logger

log = Logger(namespace="bullmq_proxy.reload")


class ReloadOnHangup(Service):
    name = "reload"

    def __init__(self, reactor: Any, reload: Callable[[], None]) -> None:
        self._reactor = reactor
        self._reload = reload
        self._previous: Any = None

    def startService(self) -> None:
        super().startService()
        # The handler only schedules: the reload runs on the reactor, between events.
        self._previous = signal.signal(
            signal.SIGHUP, lambda *_: self._reactor.callFromThread(self._run))

    def _run(self) -> None:
        log.info("SIGHUP: rereading the token file")
        self._reload()

    def stopService(self) -> None:
        super().stopService()
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
