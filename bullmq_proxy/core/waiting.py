"""Add and wait: a request/response over a queue. The job is added, and the caller gets it
back finished (its return value, or its failure) if a worker finishes it within ``wait``;
otherwise it keeps running and the caller gets its id to look it up later.

The queue's shared event feed is listened to before the job is added, so a job finished at
once is not missed; no Redis connection is held per waiting caller.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from bullmq import Queue

from bullmq_proxy.core.events import EventsHub
from bullmq_proxy.jobs import read_job

_FINISHED = frozenset({"completed", "failed"})


async def add_and_wait(events: EventsHub, queue: Queue, add: Callable[[], Awaitable[str]],
                       wait_ms: int) -> tuple[str, dict[str, Any] | None]:
    """``(job id, the finished job or None when it did not finish within wait_ms)``."""
    loop = asyncio.get_running_loop()
    finished: dict[str, asyncio.Future[None]] = {}
    seen: set[str] = set()

    def listen(event: str, args: list[Any]) -> None:
        if event in _FINISHED and args and isinstance(args[0], dict):
            job_id = str(args[0].get("jobId"))
            seen.add(job_id)
            waiter = finished.get(job_id)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    feed = events.subscribe(queue.name, listen)
    try:
        await feed.ready
        job_id = await add()
        waiter = finished[job_id] = loop.create_future()
        if job_id in seen:
            waiter.set_result(None)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter, wait_ms / 1000)
            return job_id, await read_job(queue, job_id)
        return job_id, None
    finally:
        events.unsubscribe(queue.name, listen)
