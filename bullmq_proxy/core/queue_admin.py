"""Queue management: list, inspect, pause, resume, clean, drain, obliterate, bulk retry and
promote, global rate limit and concurrency. Transport-neutral: REST and WebSocket call these
with checked values and render what they return.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from bullmq import Queue

from bullmq_proxy.errors import CONFLICT, NOT_FOUND, ProxyError
from bullmq_proxy.queues import QueueRegistry
from bullmq_proxy.redis.layout import job_types

# Keys that tell a queue exists: meta (every Node Queue writes it; pauses and limits too) and
# the events stream (every add writes it).
_MARKERS = ("meta", "events")
# SCAN batch size, how many queue names a listing holds at most, and how long a listing is
# reused while a client pages through it.
SCAN_COUNT = 1000
MAX_LISTED_QUEUES = 10_000
LISTING_TTL_SECONDS = 2.0
# Lists and sets whose keys tell that a queue holds jobs.
_STATE_KEYS = ("wait", "paused", "active", "delayed", "prioritized", "completed", "failed",
               "waiting-children")

WorkerUrls = Callable[[list[str]], Awaitable[Mapping[str, str | None]]]


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


class QueueAdmin:
    """Queue-level actions on the queues of one prefix."""

    def __init__(self, queues: QueueRegistry, worker_urls: WorkerUrls,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._queues = queues
        self._client = queues.client
        self._worker_urls = worker_urls
        self._clock = clock
        self._listing: tuple[float, list[str], bool] | None = None

    # -- reading ---------------------------------------------------------------------------

    async def names(self, reuse: bool = False) -> tuple[list[str], bool]:
        """Every queue name under the prefix, sorted, and whether the scan saw them all
        (it stops at ``MAX_LISTED_QUEUES``); with ``reuse``, the last scan if it is recent
        (a client paging through the listing)."""
        now = self._clock()
        if (reuse and self._listing is not None
                and now - self._listing[0] < LISTING_TTL_SECONDS):
            return self._listing[1], self._listing[2]
        prefix = self._queues.prefix + ":"
        found: set[str] = set()
        complete = True
        for marker in _MARKERS:
            pattern = f"{_glob_escape(prefix)}*:{marker}"
            async for key in self._client.scan_iter(match=pattern, count=SCAN_COUNT):
                name = key[len(prefix):-len(marker) - 1]
                # A queue name has no ':'; keys such as <q>:repeat:meta (a job scheduler
                # named "meta") or <q>:de:events (a deduplication id) are no queues.
                if not name or ":" in name or name in found:
                    continue
                if len(found) == MAX_LISTED_QUEUES:
                    complete = False
                    break
                found.add(name)
            if not complete:
                break
        names = sorted(found)
        self._listing = (now, names, complete)
        return names, complete

    async def list(self, start: int, length: int,
                   readable: Callable[[str], bool] | None = None) -> dict[str, Any]:
        """A page of the queues (those ``readable`` accepts, when given) with their counts."""
        names, complete = await self.names(reuse=start > 0)
        if readable is not None:
            names = [name for name in names if readable(name)]
        page = names[start:start + length]
        urls = await self._worker_urls(page) if page else {}
        summaries = await asyncio.gather(*(self._brief(name) for name in page))
        queues = [{**brief, "worker": urls.get(brief["name"])} for brief in summaries]
        return {"queues": queues, "start": start, "length": length, "total": len(names),
                "complete": complete}

    async def _brief(self, name: str) -> dict[str, Any]:
        queue = self._queues.get(name)
        major = await self._queues.layout_of(queue)
        paused, counts = await asyncio.gather(queue.isPaused(),
                                              queue.getJobCounts(*job_types([], major)))
        return {"name": name, "paused": paused, "counts": counts}

    async def require(self, name: str) -> Queue:
        """The queue, or a 404 when nothing of it is in Redis."""
        queue = self._queues.get(name)
        keys = [queue.keys[marker] for marker in (*_MARKERS, "id", *_STATE_KEYS)]
        if not await self._client.exists(*keys):
            raise ProxyError(NOT_FOUND, f"There is no queue {name!r} under this prefix.",
                             "queueName")
        return queue

    async def summary(self, name: str) -> dict[str, Any]:
        return await self._summary(await self.require(name))

    async def _summary(self, queue: Queue) -> dict[str, Any]:
        name = queue.name
        brief, concurrency, rate, schedulers, urls = await asyncio.gather(
            self._brief(name), queue.getGlobalConcurrency(), queue.getGlobalRateLimit(),
            queue.getJobSchedulersCount(), self._worker_urls([name]))
        return {**brief, "worker": urls.get(name), "globalConcurrency": concurrency,
                "globalRateLimit": rate, "schedulers": schedulers}

    # -- acting ----------------------------------------------------------------------------

    async def pause(self, name: str) -> dict[str, Any]:
        await (await self.require(name)).pause()
        return await self.summary(name)

    async def resume(self, name: str) -> dict[str, Any]:
        await (await self.require(name)).resume()
        return await self.summary(name)

    async def clean(self, name: str, grace: int, limit: int, state: str) -> dict[str, Any]:
        removed = await (await self.require(name)).clean(grace, limit, state)
        return {"removed": list(removed or [])}

    async def drain(self, name: str, delayed: bool) -> dict[str, Any]:
        await (await self.require(name)).drain(delayed)
        return await self.summary(name)

    async def obliterate(self, name: str, force: bool) -> None:
        queue = await self.require(name)
        if not force and await self._client.llen(queue.keys["active"]):
            raise self._active_conflict(name)
        was_paused = await queue.isPaused()
        try:
            await queue.obliterate(force)
        except Exception as err:
            if "active jobs" not in str(err):
                raise
            # A job became active after the check: bullmq paused the queue first.
            if not was_paused:
                await queue.resume()
            raise self._active_conflict(name) from None

    @staticmethod
    def _active_conflict(name: str) -> ProxyError:
        return ProxyError(CONFLICT, f"Queue {name!r} has active jobs; wait for them, or "
                                    "obliterate with force=true.", "queueName",
                          state="active")

    async def retry_jobs(self, name: str, state: str, count: int) -> dict[str, Any]:
        await (await self.require(name)).retryJobs({"state": state, "count": count})
        return await self.summary(name)

    async def promote_jobs(self, name: str, count: int) -> dict[str, Any]:
        await (await self.require(name)).promoteJobs({"count": count})
        return await self.summary(name)

    async def set_rate_limit(self, name: str, max_jobs: int, duration: int) -> dict[str, Any]:
        await self._queues.get(name).setGlobalRateLimit(max_jobs, duration)
        return await self.summary(name)

    async def remove_rate_limit(self, name: str) -> dict[str, Any]:
        queue = await self.require(name)
        await queue.removeGlobalRateLimit()
        # Not summary(): a queue that held nothing but this limit is gone from Redis now.
        return await self._summary(queue)

    async def set_concurrency(self, name: str, maximum: int) -> dict[str, Any]:
        await self._queues.get(name).setGlobalConcurrency(maximum)
        return await self.summary(name)

    async def remove_concurrency(self, name: str) -> dict[str, Any]:
        queue = await self.require(name)
        await queue.removeGlobalConcurrency()
        # Not summary(): a queue that held nothing but this limit is gone from Redis now.
        return await self._summary(queue)
