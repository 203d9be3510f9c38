"""Pull workers: a client takes the next job over HTTP (``POST /queues/:q/jobs/next``) and
settles it later with the job's lock token, as endpoints that answered 202 do.

A job is taken with bullmq's own ``moveToActive`` under a fresh token of 128 random bits,
so it is locked, counted and, if it came from a job scheduler, followed by its next run,
exactly as a worker takes it. A client that waits (a long poll) holds no Redis connection:
it waits on the queue's shared event feed and tries again when a job arrives (and once a
second, for delayed jobs that become due). A pulled job whose lock runs out goes back to
wait through BullMQ's stalled-job check, which this module runs for the queues pulled from,
so a client that never answers does not keep its job.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable
from typing import Any

from bullmq import Queue

from bullmq_proxy.core import moves
from bullmq_proxy.core.events import EventsHub
from bullmq_proxy.jobs import job_from_hash, job_json
from bullmq_proxy.logs import Logger
from bullmq_proxy.queues import QueueRegistry

log = Logger(namespace="bullmq_proxy.core.pull")

# Events after which a waiting client tries again.
_WAKING = frozenset({"waiting", "added", "resumed"})
RETRY_SECONDS = 1.0
# BullMQ's default: a job found stalled more than this many times fails.
MAX_STALLED_COUNT = 1


def new_token() -> str:
    """A lock token nobody can derive from another: 128 random bits."""
    return secrets.token_hex(16)


class Pulls:
    def __init__(self, queues: QueueRegistry, events: EventsHub, stalled_interval_ms: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._queues = queues
        self._events = events
        self._stalled_interval_ms = stalled_interval_ms
        self._clock = clock
        # Queues pulled from, with when; the stalled check runs for them.
        self._pulled: dict[str, float] = {}
        self._checking: asyncio.Task[None] | None = None

    async def take(self, name: str, lock_ms: int, wait_ms: int) -> dict[str, Any] | None:
        """``{job, token}`` of the job taken, or None when none came within ``wait_ms``."""
        queue = self._queues.get(name)
        self._watch(name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_ms / 1000
        woken = asyncio.Event()

        def wake(event: str, args: list[Any]) -> None:
            if event in _WAKING:
                woken.set()

        feed = self._events.subscribe(name, wake) if wait_ms > 0 else None
        try:
            if feed is not None:
                await feed.ready
            while True:
                woken.clear()
                taken = await self._take(queue, lock_ms)
                if taken is not None:
                    return taken
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), min(remaining, RETRY_SECONDS))
        finally:
            if feed is not None:
                self._events.unsubscribe(name, wake)

    async def _take(self, queue: Queue, lock_ms: int) -> dict[str, Any] | None:
        token = new_token()
        raw = await moves.take(queue, token, {"lockDuration": lock_ms, "limiter": None})
        data, job_id = (raw[0], raw[1]) if raw else (None, None)
        if not data:
            return None
        job = job_from_hash(queue, data, job_id)
        if job.repeatJobKey:
            # What a worker does with a job a scheduler produced: make the next one.
            await queue.upsertJobScheduler(job.repeatJobKey, (job.opts or {}).get("repeat"),
                                           job.name, job.data, job.opts, override=False,
                                           producer_id=job.id)
        return {"job": job_json(job, "active"), "token": token}

    def _watch(self, name: str) -> None:
        self._pulled[name] = self._clock()
        if self._checking is None or self._checking.done():
            self._checking = asyncio.ensure_future(self._check_stalled())

    async def _check_stalled(self) -> None:
        """Every stalled interval, bullmq's stalled-job check on each queue pulled from in
        the last few intervals (its Redis key keeps one check per queue per interval)."""
        interval = self._stalled_interval_ms / 1000
        while self._pulled:
            await asyncio.sleep(interval)
            now = self._clock()
            for name, pulled in list(self._pulled.items()):
                if now - pulled > 10 * interval:
                    del self._pulled[name]
                    continue
                try:
                    await self._queues.get(name).backend.moveStalledJobsToWait(
                        MAX_STALLED_COUNT, self._stalled_interval_ms)
                except Exception as err:
                    log.warn("Stalled-job check of pulled queue {queue} failed: {error}",
                             queue=name, error=f"{err.__class__.__name__}: {err}")

    async def extend(self, name: str, job_id: str, token: str, duration_ms: int) -> bool:
        """Extend a pulled job's lock; False when ``token`` does not hold it."""
        return await moves.extend_lock(self._queues.get(name), job_id, token, duration_ms)

    async def close(self) -> None:
        self._pulled.clear()
        if self._checking is not None:
            self._checking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checking
