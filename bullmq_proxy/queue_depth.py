"""``bullmq_proxy_queue_jobs{queue,state}``: the jobs of each queue the proxy serves, by state.

Read from Redis when scraped, at most once per ``CACHE_SECONDS`` however many scrapers ask.
The label set stays bounded: only queues with a worker here, and queues used through the
proxy in the last hour (at most ``QUEUE_CACHE_SIZE`` of them), never every name a client
ever tried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.metrics_core import GaugeMetricFamily

from bullmq_proxy.logs import Logger
from bullmq_proxy.queues import QueueRegistry
from bullmq_proxy.redis.layout import job_types

log = Logger(namespace="bullmq_proxy.queue_depth")

NAME = "bullmq_proxy_queue_jobs"
HELP = "Jobs in each queue the proxy serves, by state (read from Redis)"
CACHE_SECONDS = 5.0
SEEN_WITHIN_SECONDS = 3600.0
READ_TIMEOUT_SECONDS = 2.0


class QueueDepth:
    """A collector for ``Metrics.deployment``; ``read`` refreshes what it shows."""

    def __init__(self, queues: QueueRegistry, worked: Callable[[], Iterable[str]],
                 clock: Callable[[], float]) -> None:
        self._queues = queues
        self._worked = worked
        self._clock = clock
        self._read_at: float | None = None
        self._counts: dict[str, dict[str, int]] = {}

    def served(self) -> list[str]:
        return sorted({*self._worked(), *self._queues.used_within(SEEN_WITHIN_SECONDS)})

    async def read(self) -> None:
        now = self._clock()
        if self._read_at is not None and now - self._read_at < CACHE_SECONDS:
            return
        self._read_at = now
        names = self.served()
        try:
            counts = await asyncio.wait_for(asyncio.gather(*map(self._count, names)),
                                            READ_TIMEOUT_SECONDS)
        except Exception as err:
            # Stale depths would mislead: show none until Redis answers again.
            log.debug("Queue depths not read: {error}", error=f"{type(err).__name__}: {err}")
            self._counts = {}
            return
        self._counts = dict(zip(names, counts, strict=True))

    async def _count(self, name: str) -> dict[str, int]:
        queue = self._queues.get(name, use=False)
        # BullMQ's default states; a BullMQ 5 queue's paused jobs too, in their own list.
        states = job_types((), await self._queues.layout_of(queue))
        return await queue.getJobCounts(*states)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(NAME, HELP, labels=("queue", "state"))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(NAME, HELP, labels=("queue", "state"))
        for queue, counts in self._counts.items():
            for state, count in sorted(counts.items()):
                family.add_metric((queue, state), count)
        yield family
