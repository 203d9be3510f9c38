"""Job management: remove, retry, promote, update data, change priority or delay, list a
flow's children, find jobs by name. Each action answers the job with its new state; an
unknown job is a 404, a job in a state the action does not apply to a 409 with that state.
"""

from __future__ import annotations

from typing import Any

import orjson
from bullmq import Job, Queue
from bullmq.redis_connection import loadScript

from bullmq_proxy.core import moves
from bullmq_proxy.errors import CONFLICT, NOT_FOUND, ProxyError
from bullmq_proxy.jobs import job_json, read_job
from bullmq_proxy.queues import QueueRegistry

# A name filter examines at most this many jobs of the requested states per request, in
# batches: its cost is bounded whatever the queue holds.
MAX_NAME_SCAN = 10_000
NAME_SCAN_BATCH = 500
# BullMQ script answers.
_MISSING = -1
_NOT_IN_STATE = -3
_SCHEDULER_JOB = -8


def _conflict(job_id: str, state: str, what: str) -> ProxyError:
    return ProxyError(CONFLICT, f"Job {job_id!r} is {state}; {what}.", "jobId", state=state)


class JobAdmin:
    def __init__(self, queues: QueueRegistry) -> None:
        self._queues = queues
        # bullmq ships this script without registering it (Python's Job has no changeDelay).
        self._change_delay = queues.client.register_script(loadScript("changeDelay-4.lua"))

    async def _job(self, queue: Queue, job_id: str) -> tuple[Job, str]:
        state = await queue.getJobState(job_id)
        job = await Job.fromId(queue, job_id) if state != "unknown" else None
        if job is None:
            raise ProxyError(NOT_FOUND, f"Job {job_id!r} does not exist in this queue.",
                             "jobId")
        return job, state

    async def _answer(self, queue: Queue, job_id: str) -> dict[str, Any]:
        rendered = await read_job(queue, job_id)
        if rendered is None:
            raise ProxyError(NOT_FOUND, f"Job {job_id!r} does not exist in this queue.",
                             "jobId")
        return rendered

    async def remove(self, name: str, job_id: str, children: bool) -> dict[str, Any]:
        queue = self._queues.get(name)
        job, state = await self._job(queue, job_id)
        result = await moves.remove(queue, job_id, children)
        if result == _SCHEDULER_JOB:
            raise ProxyError(CONFLICT, f"Job {job_id!r} is the next job of job scheduler "
                                       f"{job.repeatJobKey!r}; remove the scheduler instead.",
                             "jobId", state=state)
        if result != 1:
            raise _conflict(job_id, "active", "a locked job (or one with locked children) "
                                              "cannot be removed until it finishes")
        return {**job_json(job, "removed"), "previousState": state}

    async def retry(self, name: str, job_id: str) -> dict[str, Any]:
        queue = self._queues.get(name)
        job, state = await self._job(queue, job_id)
        if state not in ("failed", "completed"):
            raise _conflict(job_id, state, "only failed or completed jobs can be retried")
        try:
            await moves.retry(job, state)
        except TypeError:
            raise _conflict(job_id, await queue.getJobState(job_id),
                            "only failed or completed jobs can be retried") from None
        return await self._answer(queue, job_id)

    async def promote(self, name: str, job_id: str) -> dict[str, Any]:
        queue = self._queues.get(name)
        job, state = await self._job(queue, job_id)
        if state != "delayed":
            raise _conflict(job_id, state, "only delayed jobs can be promoted")
        try:
            await moves.promote(job)
        except TypeError:
            raise _conflict(job_id, await queue.getJobState(job_id),
                            "only delayed jobs can be promoted") from None
        return await self._answer(queue, job_id)

    async def update_data(self, name: str, job_id: str, data: Any) -> dict[str, Any]:
        queue = self._queues.get(name)
        job, _ = await self._job(queue, job_id)
        try:
            await job.updateData(data)
        except TypeError:
            raise ProxyError(NOT_FOUND, f"Job {job_id!r} does not exist in this queue.",
                             "jobId") from None
        return await self._answer(queue, job_id)

    async def change_priority(self, name: str, job_id: str, priority: int, lifo: bool
                              ) -> dict[str, Any]:
        queue = self._queues.get(name)
        job, state = await self._job(queue, job_id)
        if state not in ("waiting", "prioritized", "delayed"):
            raise _conflict(job_id, state, "the priority of a job applies while it waits")
        await moves.change_priority(job, priority, lifo)
        return await self._answer(queue, job_id)

    async def change_delay(self, name: str, job_id: str, delay: int) -> dict[str, Any]:
        queue = self._queues.get(name)
        _, state = await self._job(queue, job_id)
        if state != "delayed":
            raise _conflict(job_id, state, "only the delay of a delayed job can change")
        result = await moves.change_delay(queue, job_id, delay)
        if result == _MISSING:
            raise ProxyError(NOT_FOUND, f"Job {job_id!r} does not exist in this queue.",
                             "jobId")
        if result == _NOT_IN_STATE:
            raise _conflict(job_id, await queue.getJobState(job_id),
                            "only the delay of a delayed job can change")
        return await self._answer(queue, job_id)

    async def children(self, name: str, job_id: str, start: int, length: int
                       ) -> dict[str, Any]:
        """A parent's children as Node BullMQ's ``getDependencies`` names them: pending
        (``unprocessed``), ``processed`` with their return values, ``failed`` (the children
        whose failure the parent waits on) and ``ignored`` with their failure reasons
        (``ignoreDependencyOnFailure``); each paged by key order (failed: by time)."""
        queue = self._queues.get(name)
        await self._job(queue, job_id)
        key = queue.toKey(job_id)
        client = self._queues.client
        async with client.pipeline(transaction=False) as pipe:
            pipe.smembers(f"{key}:dependencies")
            pipe.hgetall(f"{key}:processed")
            pipe.zrange(f"{key}:unsuccessful", 0, -1)
            pipe.hgetall(f"{key}:failed")
            pending, processed, failed, ignored = await pipe.execute()
        window = slice(start, start + length)
        return {
            "unprocessed": sorted(pending)[window],
            "processed": {k: _decoded(processed[k]) for k in sorted(processed)[window]},
            "failed": failed[window],
            "ignored": {k: ignored[k] for k in sorted(ignored)[window]},
            "counts": {"unprocessed": len(pending), "processed": len(processed),
                       "failed": len(failed), "ignored": len(ignored)},
            "start": start,
            "length": length,
        }

    async def find_by_name(self, queue: Queue, job_name: str, types: list[str], start: int,
                           length: int) -> dict[str, Any]:
        """Jobs of ``types`` (states as the queue's layout lists them) named ``job_name``,
        examining at most ``MAX_NAME_SCAN`` of them."""
        matches: list[Job] = []
        scanned = 0
        complete = True
        for state in types:
            offset = 0
            while True:
                if scanned >= MAX_NAME_SCAN:
                    complete = False
                    break
                size = min(NAME_SCAN_BATCH, MAX_NAME_SCAN - scanned)
                batch = await queue.getJobs([state], offset, offset + size - 1)
                offset += len(batch)
                scanned += len(batch)
                matches.extend(job for job in batch if job.name == job_name)
                if len(batch) < size:
                    break
        return {
            "jobs": [job_json(job) for job in matches[start:start + length]],
            "matched": len(matches),
            "scanned": scanned,
            "complete": complete,
            "start": start,
            "length": length,
        }


def _decoded(raw: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw
