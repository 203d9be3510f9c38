"""Adding jobs, for REST and WebSocket alike: plain jobs in one pipelined bulk call,
repeating ones as job schedulers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bullmq import Job, Queue

from bullmq_proxy.jobs import job_json
from bullmq_proxy.validation import NewJob

BulkAdd = Callable[[Queue, Sequence[dict[str, Any]]], Awaitable[list[Job]]]


async def add_jobs(
    queue: Queue, jobs: list[NewJob], bulk: BulkAdd | None = None
) -> list[dict[str, Any]]:
    """Add jobs in one pipelined bulk call; repeatable ones become job schedulers.

    ``bulk`` adds the plain jobs (default: the queue's own ``addBulk``; the REST route passes
    an ``AddBatcher`` that shares round trips between requests). The answer keeps the order
    of the request.
    """
    plain = [(i, job) for i, job in enumerate(jobs) if "repeat" not in job.opts]
    repeating = [(i, job) for i, job in enumerate(jobs) if "repeat" in job.opts]
    rendered: list[dict[str, Any]] = [{} for _ in jobs]
    if plain:
        specs = [{"name": job.name, "data": job.data, "opts": job.opts} for _, job in plain]
        added = await (bulk(queue, specs) if bulk else queue.addBulk(specs))
        for (index, _), job in zip(plain, added, strict=True):
            rendered[index] = job_json(job)
    for index, job in repeating:
        opts = dict(job.opts)
        repeat = opts.pop("repeat")
        scheduler_id = repeat.pop("key", job.name)
        next_job = await queue.upsertJobScheduler(scheduler_id, repeat, job.name, job.data, opts)
        rendered[index] = (
            job_json(next_job) if next_job is not None
            else {"name": job.name, "data": job.data, "opts": job.opts, "id": None}
        )
    return rendered
