"""The ``websockets`` service: every open socket and the resources behind them, closed
cleanly on shutdown (workers finish or fail their in-flight jobs, feeds stop)."""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred

from bullmq_proxy.batching import AddBatcher
from bullmq_proxy.bridge import as_deferred
from bullmq_proxy.config import Config
from bullmq_proxy.core import Core
from bullmq_proxy.errors import RATE_LIMITED, ProxyError
from bullmq_proxy.job_updates import JobUpdates
from bullmq_proxy.logs import Logger
from bullmq_proxy.metrics import Metrics
from bullmq_proxy.rights import Principal
from bullmq_proxy.workers.connections import WorkerConnections
from bullmq_proxy.ws.commands import Scope
from bullmq_proxy.ws.events import EventsSession
from bullmq_proxy.ws.paths import Kind, Target
from bullmq_proxy.ws.protocol import ProxyProtocol
from bullmq_proxy.ws.queue import QueueSession
from bullmq_proxy.ws.session import Admission, ISession
from bullmq_proxy.ws.worker import WorkerSession

log = Logger(namespace="bullmq_proxy.ws")

# Seconds a client refused for capacity waits before trying again.
RETRY_AFTER = "5"


class WebSocketService(Service):
    def __init__(self, config: Config, core: Core, metrics: Metrics,
                 worker_connections: WorkerConnections) -> None:
        self.name = "websockets"
        self._worker_connections = worker_connections
        self.config = config
        self._metrics = metrics
        self._core = core
        self._queues = queues = core.queues
        self.sockets: set[ProxyProtocol] = set()
        self._closing: set[asyncio.Future[Any]] = set()
        # Adds from every socket share pipelines, as REST adds do among themselves.
        self._batcher = AddBatcher(queues.client)
        self._updates = JobUpdates(queues)
        self.hub = core.events
        # Who each upgrade admitted, by its transport, until its protocol opens.
        self._admissions: weakref.WeakKeyDictionary[Any, Admission] = \
            weakref.WeakKeyDictionary()

    def admitted(self, transport: Any, admission: Admission) -> None:
        self._admissions[transport] = admission

    def admission(self, transport: Any) -> Admission | None:
        return self._admissions.pop(transport, None)

    def tokens_reloaded(self, principal: Callable[[str], Awaitable[Principal | None]]) -> None:
        """After a token-file reload: sockets keep the token's new rights, or are closed
        (4401) when it is no longer accepted."""
        recheck = asyncio.ensure_future(self._recheck(principal))
        self._closing.add(recheck)
        recheck.add_done_callback(self._closing.discard)

    async def _recheck(self, principal: Callable[[str], Awaitable[Principal | None]]) -> None:
        for protocol in list(self.sockets):
            if protocol.admission is None:
                continue
            found = await principal(protocol.admission.token)
            if found is None:
                protocol.refuse_token()
            else:
                protocol.admission.principal = found

    def worker_slots(self) -> tuple[int, int]:
        """(WebSocket worker sockets open, the concurrency they asked for together)."""
        targets = [p.target for p in list(self.sockets)
                   if p.target is not None and p.target.kind is Kind.WORKER]
        return len(targets), sum(t.concurrency for t in targets)

    def refuse_worker(self, target: Target) -> ProxyError | None:
        """Why this instance cannot take one more worker socket, or None. Checked before the
        handshake, in the same reactor turn as the session opens, so two upgrades cannot
        both take the last slot."""
        if target.kind is not Kind.WORKER:
            return None
        sockets, slots = self.worker_slots()
        if sockets + 1 > self.config.ws_max_workers:
            detail = (f"This instance serves at most {self.config.ws_max_workers} WebSocket "
                      "workers (WS_MAX_WORKERS); retry later, or connect to another instance.")
            return ProxyError(RATE_LIMITED, detail, headers={"Retry-After": RETRY_AFTER})
        if slots + target.concurrency > self.config.ws_max_worker_slots:
            detail = (f"A concurrency of {target.concurrency} would take this instance's "
                      f"WebSocket workers past {self.config.ws_max_worker_slots} slots "
                      f"(WS_MAX_WORKER_SLOTS; {slots} in use); ask for fewer, or retry later.")
            return ProxyError(RATE_LIMITED, detail, "concurrency",
                              headers={"Retry-After": RETRY_AFTER})
        return None

    def open_session(self, protocol: ProxyProtocol, target: Target) -> ISession:
        self.sockets.add(protocol)
        log.debug("WebSocket opened: {kind} of queue {queue}",
                  kind=target.kind.value, queue=target.queue)
        if target.kind is Kind.QUEUE:
            queue = self._queues.get(target.queue)
            scope = Scope(target.queue, queue, self._batcher.add_bulk, self._updates,
                          functools.partial(self._metrics.added, target.queue),
                          lambda: self._queues.layout_of(queue), self._core,
                          protocol.admission)
            return QueueSession(protocol, scope, self.config.request_timeout)
        if target.kind is Kind.WORKER:
            opts = {
                "prefix": self.config.queue_prefix,
                "lockDuration": self.config.worker_lock_duration,
                "stalledInterval": self.config.worker_stalled_interval,
            }
            session = WorkerSession(protocol, target.queue, target.concurrency, opts,
                                    self.config.ws_message_timeout,
                                    self._worker_connections, self.config.bullmq_layout)
            self._metrics.count_jobs(target.queue, session.worker)
            return session
        return EventsSession(protocol, self.hub, target.queue, target.events)

    def close_session(self, protocol: ProxyProtocol, session: ISession) -> None:
        self.sockets.discard(protocol)
        closing = asyncio.ensure_future(session.closed())
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return as_deferred(self._stop())

    async def _stop(self) -> None:
        for protocol in list(self.sockets):
            protocol.go_away()
            # Release now rather than after the close handshake: shutdown must not wait
            # on clients that do not answer.
            protocol.onClose(False, None, None)
        # The event feeds are the core's: they close with it, after the listeners.
        await asyncio.gather(*self._closing, return_exceptions=True)
