"""One rendering of a job for every surface: REST bodies, WebSocket replies and events."""

from __future__ import annotations

from typing import Any

from bullmq import Job, Queue


def job_json(job: Job, state: str | None = None) -> dict[str, Any]:
    """The job as BullMQ's ``Job.asJSON()`` shape, with data, opts, progress and return
    value decoded from their stored JSON, plus ``state`` when known."""
    rendered: dict[str, Any] = {
        "id": job.id,
        "name": job.name,
        "data": job.data,
        "opts": {key: value for key, value in job.opts.items() if value is not None},
        "progress": job.progress,
        "delay": job.delay,
        "priority": job.priority,
        "timestamp": job.timestamp,
        "attemptsMade": job.attemptsMade,
        "attemptsStarted": job.attemptsStarted,
        "stalledCounter": job.stalledCounter,
        "failedReason": job.failedReason,
        "stacktrace": job.stacktrace or [],
        "returnvalue": job.returnvalue,
        "processedOn": job.processedOn or None,
        "finishedOn": job.finishedOn or None,
        "parent": job.parent,
        "parentKey": job.parentKey,
        "repeatJobKey": job.repeatJobKey,
        "deduplicationId": job.deduplication_id,
    }
    if state is not None:
        rendered["state"] = state
    return rendered


async def read_job(queue: Queue, job_id: str) -> dict[str, Any] | None:
    """The job with its state, or None when it does not exist.

    The state is read first: a job finishes (state and return value) in one script, so a job
    read after its state never shows "completed" without its return value.
    """
    state = await queue.getJobState(job_id)
    job = await queue.getJob(job_id)
    return None if job is None else job_json(job, state)
