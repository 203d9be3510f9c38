"""The ``websockets`` service: every open socket and the resources behind them, closed
cleanly on shutdown (workers finish or fail their in-flight jobs, feeds stop)."""

from __future__ import annotations

import asyncio
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from bullmq_proxy.batching import AddBatcher
from bullmq_proxy.bridge import as_deferred
from bullmq_proxy.config import Config
from bullmq_proxy.metrics import Metrics
from bullmq_proxy.queues import QueueRegistry
from bullmq_proxy.workers.connections import WorkerConnections
from bullmq_proxy.ws.commands import Scope
from bullmq_proxy.ws.events import EventsHub, EventsSession
from bullmq_proxy.ws.paths import Kind, Target
from bullmq_proxy.ws.protocol import ProxyProtocol
from bullmq_proxy.ws.queue import QueueSession
from bullmq_proxy.ws.session import ISession
from bullmq_proxy.ws.worker import WorkerSession

log = Logger(namespace="bullmq_proxy.ws")


class WebSocketService(Service):
    def __init__(self, config: Config, queues: QueueRegistry, redis: Any,
                 metrics: Metrics, worker_connections: WorkerConnections) -> None:
        self.name = "websockets"
        self._worker_connections = worker_connections
        self.config = config
        self._metrics = metrics
        self._queues = queues
        self.sockets: set[ProxyProtocol] = set()
        self._closing: set[asyncio.Future[Any]] = set()
        # Adds from every socket share pipelines, as REST adds do among themselves.
        self._batcher = AddBatcher(queues.client)
        self.hub = EventsHub(redis, queues, config.redis)

    def open_session(self, protocol: ProxyProtocol, target: Target) -> ISession:
        self.sockets.add(protocol)
        log.debug("WebSocket opened: {kind} of queue {queue}",
                  kind=target.kind.value, queue=target.queue)
        if target.kind is Kind.QUEUE:
            scope = Scope(self._queues.get(target.queue), self._batcher.add_bulk,
                          self._metrics.jobs_added.labels(target.queue).inc)
            return QueueSession(protocol, scope, self.config.request_timeout)
        if target.kind is Kind.WORKER:
            opts = {
                "prefix": self.config.queue_prefix,
                "lockDuration": self.config.worker_lock_duration,
                "stalledInterval": self.config.worker_stalled_interval,
            }
            return WorkerSession(protocol, target.queue, target.concurrency, opts,
                                 self.config.ws_message_timeout, self._worker_connections)
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
        await asyncio.gather(*self._closing, return_exceptions=True)
        await self.hub.close()
