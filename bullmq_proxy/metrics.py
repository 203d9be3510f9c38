"""Prometheus metrics: every metric of the proxy on one ``Metrics`` object, served on
``GET /metrics`` (its route is in ``http/probes.py``).

Each proxy owns its ``CollectorRegistry`` rather than the process-global one, so several
proxies (in tests, or embedded) never collide on metric names. Labels stay bounded: routes
are templates, methods outside the known set are ``other``, statuses are classes (``2xx``),
queues are those the proxy serves.

``registry`` holds what each process counts; with ``--processes`` a scrape sums it over the
processes (``summed_metrics.py``). ``deployment`` holds what is read from Redis at scrape
time (queue depth), the same whichever process reads it, so it is not summed.
"""

from __future__ import annotations

import platform
from collections.abc import Awaitable, Callable, Iterable
from importlib.metadata import version
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from bullmq_proxy import __version__
from bullmq_proxy.redis.connection import RedisEvents
from bullmq_proxy.summed_metrics import summed

PREFIX = "bullmq_proxy"
UNMATCHED_ROUTE = "unmatched"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
ENDPOINT_OUTCOMES = ("completed", "failed", "retried", "timed_out", "accepted", "delayed")
BREAKER_STATES = ("closed", "half_open", "open")
# Endpoint calls run for seconds to minutes; HTTP requests for milliseconds.
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ENDPOINT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


def status_class(code: int) -> str:
    return f"{code // 100}xx" if 100 <= code <= 599 else "other"


def method_label(method: bytes) -> str:
    name = method.decode("ascii", "replace").upper()
    return name if name in KNOWN_METHODS else "other"


def build_labels() -> dict[str, str]:
    return {"version": __version__, "python": platform.python_version(),
            "twisted": version("twisted"), "bullmq": version("bullmq")}


class Metrics:
    """The proxy's metrics; components update the attributes that concern them."""

    def __init__(self) -> None:
        # A _created series per counter and histogram doubles the series for nothing an
        # operator graphs.
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        self.deployment = CollectorRegistry(auto_describe=True)
        self._refreshers: list[Callable[[], None]] = []
        self._readers: list[Callable[[], Awaitable[None]]] = []
        self._other_processes: Callable[[], Awaitable[list[bytes]]] | None = None
        # Labelled series looked up once (``labels()`` cost as much as the update): only
        # series that are never removed.
        self._request_series: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._call_series: dict[tuple[str, str], tuple[Any, Any]] = {}
        # Per queue, so dropped with the queue's series (``keep_queues``).
        self._added_series: dict[str, Any] = {}
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        r = self.registry
        Info(f"{PREFIX}_build", "Versions of the running proxy and of what it runs on",
             registry=r).info(build_labels())
        self.http_requests = Counter(
            f"{PREFIX}_http_requests", "HTTP requests answered",
            ["route", "method", "status"], registry=r,
        )
        self.http_request_duration = Histogram(
            f"{PREFIX}_http_request_duration_seconds", "Time to answer an HTTP request",
            ["route", "method"], buckets=HTTP_BUCKETS, registry=r,
        )
        self.jobs_added = Counter(
            f"{PREFIX}_jobs_added", "Jobs added through the proxy", ["queue"], registry=r,
        )
        self.jobs_completed = Counter(
            f"{PREFIX}_jobs_completed", "Jobs the proxy's workers completed", ["queue"],
            registry=r,
        )
        self.jobs_failed = Counter(
            f"{PREFIX}_jobs_failed",
            "Job attempts the proxy's workers failed, retried ones included", ["queue"],
            registry=r,
        )
        self.endpoint_calls = Counter(
            f"{PREFIX}_endpoint_calls", "Jobs sent to worker HTTP endpoints, by outcome",
            ["queue", "outcome"], registry=r,
        )
        self.endpoint_call_duration = Histogram(
            f"{PREFIX}_endpoint_call_duration_seconds", "Time a worker endpoint took per job",
            ["queue", "outcome"], buckets=ENDPOINT_BUCKETS, registry=r,
        )
        self.jobs_in_flight = Gauge(
            f"{PREFIX}_jobs_in_flight", "Jobs being processed by worker endpoints now",
            ["queue"], registry=r,
        )
        self.workers_registered = Gauge(
            f"{PREFIX}_workers_registered", "HTTP-endpoint workers registered", registry=r,
        )
        self.rate_limited = Counter(
            f"{PREFIX}_rate_limited", "Requests refused (429) because their token was over "
            "its rate, by token name (never the token)", ["token"], registry=r,
        )
        self.worker_errors = Counter(
            f"{PREFIX}_worker_errors", "Errors of HTTP-endpoint workers themselves (fetching "
            "or moving jobs in Redis), not of their endpoints", ["queue"], registry=r,
        )
        self.workers_refused = Gauge(
            f"{PREFIX}_workers_refused", "Registered HTTP-endpoint workers this instance does "
            "not run (1 per queue); GET /workers/:queue says why", ["queue"], registry=r,
        )
        self.websocket_connections = Gauge(
            f"{PREFIX}_websocket_connections", "Open WebSocket connections by kind",
            ["kind"], registry=r,
        )
        self.websocket_worker_slots = Gauge(
            f"{PREFIX}_websocket_worker_slots", "Concurrency of the open WebSocket workers "
            "(capped by WS_MAX_WORKER_SLOTS)", registry=r,
        )
        self.redis_command_errors = Counter(
            f"{PREFIX}_redis_command_errors", "Redis commands that failed, by error kind",
            ["kind"], registry=r,
        )
        self.redis_reconnects = Counter(
            f"{PREFIX}_redis_reconnects", "Connections to Redis re-established after a loss",
            registry=r,
        )
        self.processes = Gauge(
            f"{PREFIX}_processes", "Proxy processes whose metrics this scrape sums",
            registry=self.deployment,
        )
        self.circuit_breaker_state = Enum(
            f"{PREFIX}_circuit_breaker_state", "Circuit breaker of each worker endpoint",
            ["queue"], states=list(BREAKER_STATES), registry=r,
        )

    def observe_request(self, template: str | None, method: bytes, code: int,
                        seconds: float) -> None:
        """The router's hook, called once per answered request."""
        # Keyed by the label values, which are bounded (a client's method is not).
        key = (template or UNMATCHED_ROUTE, method_label(method), status_class(code))
        series = self._request_series.get(key)
        if series is None:
            series = self._request_series[key] = (self.http_requests.labels(*key),
                                                  self.http_request_duration.labels(*key[:2]))
        series[0].inc()
        series[1].observe(seconds)

    def observe_endpoint_call(self, queue: str, outcome: str, seconds: float) -> None:
        """The workers' hook, called once per endpoint call with one of ENDPOINT_OUTCOMES."""
        key = (queue, outcome)
        series = self._call_series.get(key)
        if series is None:
            series = self._call_series[key] = (self.endpoint_calls.labels(*key),
                                               self.endpoint_call_duration.labels(*key))
        series[0].inc()
        series[1].observe(seconds)

    def redis_events(self) -> RedisEvents:
        """For the Redis clients: failed attempts by kind, and the first command that works
        again after failures (a reconnect)."""
        lost = False

        def failed(error: Exception) -> None:
            nonlocal lost
            lost = True
            kind = "timeout" if isinstance(error, TimeoutError | RedisTimeoutError) \
                else "connection"
            self.redis_command_errors.labels(kind).inc()

        def succeeded() -> None:
            nonlocal lost
            if lost:
                lost = False
                self.redis_reconnects.inc()

        return RedisEvents(failed, succeeded)

    def count_jobs(self, queue: str, worker: Any) -> None:
        """Count what a bullmq worker of ``queue`` completes and fails."""
        completed, failed = self.jobs_completed.labels(queue), self.jobs_failed.labels(queue)
        worker.on("completed", lambda *_: completed.inc())
        worker.on("failed", lambda *_: failed.inc())

    def added(self, queue: str, count: int = 1) -> None:
        """``count`` jobs were added to ``queue`` through the proxy."""
        series = self._added_series.get(queue)
        if series is None:
            series = self._added_series[queue] = self.jobs_added.labels(queue)
        series.inc(count)

    def settled(self, queue: str, completed: bool) -> None:
        """A job held after a 202 was completed or failed through the job API."""
        (self.jobs_completed if completed else self.jobs_failed).labels(queue).inc()

    def keep_queues(self, served: Callable[[], Iterable[str]]) -> None:
        """Before every scrape, drop the per-queue series of queues no longer ``served()``
        (no worker here, not used in the last hour): a label per queue name a client ever
        tried would grow without bound."""

        def prune() -> None:
            keep = set(served())
            for counter in (self.jobs_added, self.jobs_completed, self.jobs_failed,
                            self.worker_errors):
                for (queue,) in list(counter._metrics):  # the label values it holds
                    if queue not in keep:
                        counter.remove(queue)
                        if counter is self.jobs_added:
                            self._added_series.pop(queue, None)

        self._refreshers.append(prune)

    def on_scrape(self, refresh: Callable[[], None]) -> None:
        """Run ``refresh`` before every scrape: gauges that mirror live state (workers
        running, sockets open) are read then rather than updated on every change."""
        self._refreshers.append(refresh)

    def read_on_scrape(self, read: Callable[[], Awaitable[None]]) -> None:
        """Await ``read`` before every scrape, for what ``deployment`` shows of Redis."""
        self._readers.append(read)

    def sum_with(self, other_processes: Callable[[], Awaitable[list[bytes]]]) -> None:
        """With --processes: ``other_processes`` returns their ``exposition()``s."""
        self._other_processes = other_processes

    def exposition(self) -> bytes:
        """This process's own metrics."""
        for refresh in self._refreshers:
            refresh()
        return generate_latest(self.registry)

    async def scrape(self) -> bytes:
        """What ``GET /metrics`` answers: every process's metrics summed, then Redis's."""
        for read in self._readers:
            await read()
        expositions = [self.exposition()]
        if self._other_processes is not None:
            expositions += await self._other_processes()
        self.processes.set(len(expositions))
        processes = expositions[0] if len(expositions) == 1 else summed(expositions)
        return processes + generate_latest(self.deployment)
