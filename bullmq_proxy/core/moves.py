"""Every move of a job's state the proxy makes, and nothing else: take, complete, fail,
delay, retry, promote, reprioritize, re-delay, remove, extend a lock.

Workers (HTTP endpoints, WebSocket push workers), the job API of endpoints and pull
clients, and the queue-management actions all call these; each is one of BullMQ's own
scripts (through bullmq, behind the layout prelude of ``redis/layout.py``), so what happens
to a job is BullMQ's rule whoever moves it. Callers decide *whether* to move a job; this
module is *how*.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from bullmq import Job, Queue
from bullmq.redis_connection import loadScript

# bullmq ships this script without a Python method: it is run with the keys its header names.
CHANGE_DELAY_SCRIPT = "changeDelay-4.lua"


def now_ms() -> int:
    return int(time.time() * 1000)


async def take(queue: Queue | Any, token: str, opts: dict[str, Any]) -> list[Any]:
    """The next job of ``queue`` (a Queue, or a Worker with its own lock options) moved to
    active under ``token`` (bullmq's moveToActive): ``[job data or None, id, rate-limit ms,
    next delayed timestamp]``."""
    return await queue.backend.moveToActive(token, opts)


async def complete(job: Job, token: str, value: Any, *, fetch_next: bool = False,
                   remove_on_complete: Any = None) -> Any:
    """Complete an active job held by ``token``; with ``fetch_next``, the same Redis call
    takes the queue's next job under that token (as Node BullMQ does)."""
    if remove_on_complete is None:
        remove_on_complete = job.opts.get("removeOnComplete", False)
    return await job.queue.backend.moveToCompleted(job, value, remove_on_complete, token,
                                                   fetch_next=fetch_next)


async def fail(job: Job, token: str, error: BaseException) -> None:
    """Fail an active job: bullmq's attempts and backoff decide whether it runs again."""
    await job.moveToFailed(error, token, fetchNext=False)


async def delay(job: Job, token: str, until_ms: int) -> None:
    """Put an active job back to wait until ``until_ms`` without spending an attempt."""
    await job.moveToDelayed(until_ms, token)


async def retry(job: Job, state: str) -> None:
    """A failed or completed job, back to wait."""
    await job.retry(state)


async def promote(job: Job) -> None:
    """A delayed job, to wait now."""
    await job.promote()


async def change_priority(job: Job, priority: int, lifo: bool) -> None:
    await job.changePriority({"priority": priority, "lifo": lifo})


async def change_delay(queue: Queue, job_id: str, delay_ms: int) -> int:
    """A delayed job, due ``delay_ms`` from now: 0, or bullmq's -1 (no job) / -3 (not
    delayed)."""
    keys = queue.keys
    # A rare call: registering costs a SHA-1 of the script, and EVALSHA then finds it.
    script = queue.client.register_script(_change_delay_source())
    return await script(keys=[keys["delayed"], keys["meta"], keys["marker"], keys["events"]],
                        args=[delay_ms, now_ms(), job_id, queue.toKey(job_id)])


@functools.cache
def _change_delay_source() -> str:
    return loadScript(CHANGE_DELAY_SCRIPT)


async def remove(queue: Queue, job_id: str, children: bool) -> int:
    """bullmq's removeJob: 1 removed, 0 locked, -8 the next job of a job scheduler."""
    return await queue.remove(job_id, {"removeChildren": children})


async def extend_lock(queue: Queue, job_id: str, token: str, duration_ms: int) -> bool:
    """Extend the lock ``token`` holds on an active job; False when it does not hold it."""
    return bool(await queue.backend.extendLock(job_id, token, duration_ms))
