"""The ``workers`` service: one worker per registered queue, kept in step with Redis.

Each is a ``FetchNextWorker``: bullmq's Worker with a leaner loop, so locks, lock renewal,
the stalled-job check, attempts, backoff and events behave as in Node BullMQ; the proxy
supplies the processor that calls the endpoint. They hold no Redis connection of their own:
all share the process's ``WorkerConnections``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred

from bullmq_proxy.bridge import as_deferred, as_future
from bullmq_proxy.config import Config
from bullmq_proxy.errors import ProxyError
from bullmq_proxy.logs import Logger
from bullmq_proxy.workers.breaker import CircuitBreaker
from bullmq_proxy.workers.connections import WorkerConnections
from bullmq_proxy.workers.dispatcher import CallObserver, Dispatcher, EndpointCaller, HTTPClient
from bullmq_proxy.workers.fetch_next import FetchNextWorker
from bullmq_proxy.workers.follower import BLOCK_MS, RegistryFollower
from bullmq_proxy.workers.http_client import EndpointAgent
from bullmq_proxy.workers.metadata import WorkerMetadata, check_slots, load_metadata
from bullmq_proxy.workers.settlement import Settlements
from bullmq_proxy.workers.store import WorkerStore

log = Logger(namespace="bullmq_proxy.workers")

# The least idle connections kept per endpoint host, however few workers run.
MIN_PERSISTENT_PER_HOST = 32
# Seconds between two log lines of a worker's errors; also what /readyz calls recent.
ERROR_LOG_INTERVAL = 60.0


@attrs.frozen
class RunningWorker:
    metadata: WorkerMetadata
    worker: FetchNextWorker
    dispatcher: Dispatcher


class WorkersService(Service):
    """Runs the workers of every registered queue; ``loaded`` tells readiness."""

    def __init__(
        self, config: Config, reactor: Any, store: WorkerStore, blocking: Any,
        http: HTTPClient, settlements: Settlements, connections: WorkerConnections,
        pool: EndpointAgent | None = None, observe_call: CallObserver | None = None,
        count_jobs: Callable[[str, FetchNextWorker], None] | None = None,
        observe_error: Callable[[str], None] | None = None,
    ) -> None:
        self.name = "workers"
        self._connections = connections
        self._observe_call = observe_call
        self._count_jobs = count_jobs
        self._observe_error = observe_error
        self._logged_errors: dict[str, float] = {}
        self._config = config
        self._reactor = reactor
        self._http = http
        self._pool = pool
        self.settlements = settlements
        self.store = store
        self.workers: dict[str, RunningWorker] = {}
        # Registrations this instance will not run, and why (GET /workers/:queue, /readyz).
        self.refused: dict[str, str] = {}
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
        # Stop taking jobs at once; the registry read in progress ends meanwhile, and what it
        # brings starts no worker any more (apply).
        self._follower.stopping = True
        for queue in list(self.workers):
            self._stop_worker(queue)
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=BLOCK_MS / 1000 + 2)
            if not self._task.done():
                # Redis is away and the read is retrying: do not let it hold the shutdown.
                self._task.cancel()
                await asyncio.wait({self._task}, timeout=1)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        if self._pool is not None:
            await as_future(self._pool.closeCachedConnections())
        log.info("Workers closed")

    async def reconcile(self, registrations: Mapping[str, str]) -> None:
        for queue in set(self.workers) - set(registrations):
            self._stop_worker(queue)
        for queue in set(self.refused) - set(registrations):
            del self.refused[queue]
        for queue, raw in registrations.items():
            await self.apply(queue, raw)

    async def apply(self, queue: str, raw: str | None) -> None:
        """Make the queue's worker match its registration (None: no registration)."""
        if not self.running:
            return
        current = self.workers.get(queue)
        if raw is None:
            self.refused.pop(queue, None)
            if current is not None:
                log.info("Worker of queue {queue} removed", queue=queue)
                self._stop_worker(queue)
            return
        try:
            metadata = load_metadata(raw, self._config)
            self._check_slots(metadata)
        except (ProxyError, ValueError) as err:
            # A registration written around the API (by hand, by another proxy or an older
            # version of this one) or past this instance's slots: it must not stop the
            # follower, and the worker of an outdated registration must not keep running.
            reason = getattr(err, "detail", str(err))
            self.refused[queue] = reason
            log.error("Not running the worker of queue {queue}: {error}", queue=queue,
                      error=reason)
            if current is not None:
                self._stop_worker(queue)
            return
        self.refused.pop(queue, None)
        if current is not None and current.metadata.sha == metadata.sha:
            return
        if current is not None:
            self._stop_worker(queue)
        self.workers[queue] = self._start_worker(metadata)
        self._size_pool()
        log.info("Worker of queue {queue} {how}", queue=queue,
                 how="replaced" if current is not None else "started")

    def slots_in_use(self, besides: str | None = None) -> int:
        """Concurrency slots of the running workers, leaving out the queue ``besides``."""
        return sum(w.metadata.concurrency for q, w in self.workers.items() if q != besides)

    def _check_slots(self, metadata: WorkerMetadata) -> None:
        check_slots(metadata, self.slots_in_use(besides=metadata.queue),
                    self._config.worker_max_slots)

    def _start_worker(self, metadata: WorkerMetadata) -> RunningWorker:
        caller = EndpointCaller(self._http, self._reactor, metadata.queue, metadata.endpoint,
                                self._config.worker_signing_secret,
                                self._config.endpoint_max_answer,
                                self._config.worker_max_retry_delay)
        breaker = CircuitBreaker(self._reactor.seconds, self._config.worker_breaker_threshold,
                                 self._config.worker_breaker_window)
        dispatcher = Dispatcher(caller, metadata.queue, breaker, self.settlements,
                                metadata.endpoint.async_timeout_ms, self._observe_call)
        opts: dict[str, Any] = {
            **metadata.opts,
            "prefix": self._config.queue_prefix,
            "lockDuration": self._config.worker_lock_duration,
            "stalledInterval": self._config.worker_stalled_interval,
        }
        worker = FetchNextWorker(metadata.queue, dispatcher, opts, self._connections,
                                 layout=self._config.bullmq_layout)
        if self._count_jobs is not None:
            self._count_jobs(metadata.queue, worker)
        worker.on("error", lambda err, *_: self._worker_failed(metadata.queue, dispatcher, err))
        return RunningWorker(metadata, worker, dispatcher)

    def _worker_failed(self, queue: str, dispatcher: Dispatcher, error: BaseException) -> None:
        """Shown in GET /workers/:queue, counted, and logged once a minute at most: a worker
        that keeps failing must not fill the log."""
        dispatcher.state.worker_failed(error, time.time())
        if self._observe_error is not None:
            self._observe_error(queue)
        now = self._reactor.seconds()
        if now - self._logged_errors.get(queue, -ERROR_LOG_INTERVAL) >= ERROR_LOG_INTERVAL:
            self._logged_errors[queue] = now
            log.warn("Worker of queue {queue} hit an error ({count} so far): {error}",
                     queue=queue, count=dispatcher.state.worker_errors,
                     error=dispatcher.state.last_worker_error)

    def failing(self, within: float = ERROR_LOG_INTERVAL) -> list[str]:
        """Queues whose worker hit an error in the last ``within`` seconds."""
        since = time.time() - within
        return [queue for queue, running in self.workers.items()
                if (running.dispatcher.state.last_worker_error_at or 0) >= since]

    def _size_pool(self) -> None:
        """Keep an idle connection for every slot: a pool smaller than the concurrency closes
        connections that the next calls must open again, one TCP handshake per job."""
        if self._pool is not None:
            self._pool.maxPersistentPerHost = max(MIN_PERSISTENT_PER_HOST, self.slots_in_use())

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
