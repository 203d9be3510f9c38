"""The ``workers`` service: one worker per registered queue, kept in step with Redis.

Each is a ``FetchNextWorker``: bullmq's Worker with a leaner loop, so locks, lock renewal,
the stalled-job check, attempts, backoff and events behave as in Node BullMQ; the proxy
supplies the processor that calls the endpoint.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from bullmq_proxy.bridge import as_deferred, as_future
from bullmq_proxy.config import Config
from bullmq_proxy.errors import ProxyError
from bullmq_proxy.redis.connection import RedisClient, close_client, worker_client
from bullmq_proxy.workers.breaker import CircuitBreaker
from bullmq_proxy.workers.dispatcher import CallObserver, Dispatcher, EndpointCaller, HTTPClient
from bullmq_proxy.workers.fetch_next import FetchNextWorker
from bullmq_proxy.workers.follower import BLOCK_MS, RegistryFollower
from bullmq_proxy.workers.http_client import EndpointAgent
from bullmq_proxy.workers.metadata import WorkerMetadata, load_metadata
from bullmq_proxy.workers.settlement import Settlements
from bullmq_proxy.workers.store import WorkerStore

log = Logger(namespace="bullmq_proxy.workers")

# The least idle connections kept per endpoint host, however few workers run.
MIN_PERSISTENT_PER_HOST = 32


@attrs.frozen
class RunningWorker:
    metadata: WorkerMetadata
    worker: FetchNextWorker
    dispatcher: Dispatcher
    client: RedisClient


class WorkersService(Service):
    """Runs the workers of every registered queue; ``loaded`` tells readiness."""

    def __init__(
        self, config: Config, reactor: Any, store: WorkerStore, blocking: Any,
        http: HTTPClient, settlements: Settlements, pool: EndpointAgent | None = None,
        observe_call: CallObserver | None = None,
    ) -> None:
        self.name = "workers"
        self._observe_call = observe_call
        self._config = config
        self._reactor = reactor
        self._http = http
        self._pool = pool
        self.settlements = settlements
        self.store = store
        self.workers: dict[str, RunningWorker] = {}
        self._closing: set[asyncio.Future[None]] = set()
        self._follower = RegistryFollower(store, blocking, self.apply, self.reconcile)
        self._task: asyncio.Future[None] | None = None

    @property
    def loaded(self) -> bool:
        """True once every registration in Redis has been loaded at least once."""
        return self._follower.loaded

    def startService(self) -> None:
        super().startService()
        self._task = asyncio.ensure_future(self._follower.follow())

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return as_deferred(self._stop())

    async def _stop(self) -> None:
        if self._task is not None:
            self._follower.stopping = True
            await asyncio.wait({self._task}, timeout=BLOCK_MS / 1000 + 2)
            if not self._task.done():
                # Redis is away and the read is retrying: do not let it hold the shutdown.
                self._task.cancel()
                await asyncio.wait({self._task}, timeout=1)
        for queue in list(self.workers):
            self._stop_worker(queue)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        if self._pool is not None:
            await as_future(self._pool.closeCachedConnections())
        log.info("Workers closed")

    async def reconcile(self, registrations: Mapping[str, str]) -> None:
        for queue in set(self.workers) - set(registrations):
            self._stop_worker(queue)
        for queue, raw in registrations.items():
            await self.apply(queue, raw)

    async def apply(self, queue: str, raw: str | None) -> None:
        """Make the queue's worker match its registration (None: no registration)."""
        current = self.workers.get(queue)
        if raw is None:
            if current is not None:
                log.info("Worker of queue {queue} removed", queue=queue)
                self._stop_worker(queue)
            return
        try:
            metadata = load_metadata(raw, self._config)
        except (ProxyError, ValueError) as err:
            # Only a registration written around the API gets here; it must not stop the
            # follower, and the worker of an outdated registration must not keep running.
            log.error("Ignoring the invalid registration of queue {queue}: {error}",
                      queue=queue, error=getattr(err, "detail", str(err)))
            if current is not None:
                self._stop_worker(queue)
            return
        if current is not None and current.metadata.sha == metadata.sha:
            return
        if current is not None:
            self._stop_worker(queue)
        self.workers[queue] = self._start_worker(metadata)
        self._size_pool()
        log.info("Worker of queue {queue} {how}", queue=queue,
                 how="replaced" if current is not None else "started")

    def _start_worker(self, metadata: WorkerMetadata) -> RunningWorker:
        caller = EndpointCaller(self._http, self._reactor, metadata.queue, metadata.endpoint,
                                self._config.worker_signing_secret, self._config.max_body_size)
        breaker = CircuitBreaker(self._reactor.seconds, self._config.worker_breaker_threshold,
                                 self._config.worker_breaker_window)
        dispatcher = Dispatcher(caller, metadata.queue, breaker, self.settlements,
                                metadata.endpoint.async_timeout_ms, self._observe_call)
        client = worker_client(self._config.redis, metadata.opts.get("concurrency", 1))
        opts: dict[str, Any] = {
            **metadata.opts,
            "connection": client,
            "prefix": self._config.queue_prefix,
            "lockDuration": self._config.worker_lock_duration,
            "stalledInterval": self._config.worker_stalled_interval,
        }
        worker = FetchNextWorker(metadata.queue, dispatcher, opts)
        worker.on("error", lambda err, *_: log.warn(
            "Worker of queue {queue} hit an error: {error}", queue=metadata.queue,
            error=f"{err.__class__.__name__}: {err}"))
        return RunningWorker(metadata, worker, dispatcher, client)

    def _size_pool(self) -> None:
        """Keep an idle connection for every slot: a pool smaller than the concurrency closes
        connections that the next calls must open again, one TCP handshake per job."""
        if self._pool is not None:
            slots = sum(w.metadata.opts.get("concurrency", 1) for w in self.workers.values())
            self._pool.maxPersistentPerHost = max(MIN_PERSISTENT_PER_HOST, slots)

    def _stop_worker(self, queue: str) -> None:
        running = self.workers.pop(queue)
        self._size_pool()
        closing = asyncio.ensure_future(self._close(running))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    async def _close(self, running: RunningWorker) -> None:
        """Stop taking jobs, give in-flight calls the grace period, then cancel them: their
        locks expire and BullMQ's stalled check hands the jobs to another worker."""
        worker = running.worker
        closing = asyncio.ensure_future(worker.close())
        done, _ = await asyncio.wait({closing}, timeout=self._config.worker_shutdown_grace)
        if not done:
            log.warn("Worker of queue {queue}: {count} endpoint call(s) still running after "
                     "the grace period; leaving their jobs to the stalled-job check",
                     queue=running.metadata.queue, count=running.dispatcher.state.in_flight)
            worker.forceClosing = True
            worker.cancelProcessing()
        await asyncio.gather(closing, return_exceptions=True)
        await close_client(running.client)
