"""REST handlers for queues and their jobs: add, list, read, logs and progress."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from bullmq_proxy.batching import AddBatcher
from bullmq_proxy.core.adding import add_jobs
from bullmq_proxy.core.events import EventsHub
from bullmq_proxy.core.job_admin import JobAdmin
from bullmq_proxy.core.waiting import add_and_wait
from bullmq_proxy.errors import JOB_FAILED, NOT_FOUND, ProxyError, invalid
from bullmq_proxy.http.router import Call, Reply
from bullmq_proxy.job_updates import JobUpdates
from bullmq_proxy.jobs import job_json, read_job
from bullmq_proxy.metrics import Metrics
from bullmq_proxy.queues import QueueRegistry
from bullmq_proxy.redis.layout import job_types
from bullmq_proxy.validation import validate_jobs, validate_page, validate_states


class QueueRoutes:
    """Handlers bound to the proxy's queue registry."""

    def __init__(self, queues: QueueRegistry, metrics: Metrics, jobs: JobAdmin,
                 events: EventsHub) -> None:
        self._queues = queues
        self._metrics = metrics
        self._jobs = jobs
        self._events = events
        self._batcher = AddBatcher(queues.client)
        self._updates = JobUpdates(queues)

    async def add(self, call: Call) -> Any:
        jobs = validate_jobs(call.json())
        wait = call.args.get("wait", 0)
        if wait and len(jobs) != 1:
            raise invalid("wait", "wait takes exactly one job: send a body of one job")
        queue = self._queues.get(call.params["queueName"])
        if not wait:
            added = await add_jobs(queue, jobs, self._batcher.add_bulk)
            self._metrics.added(call.params["queueName"], len(added))
            return added

        async def add_one() -> str:
            (job,) = await add_jobs(queue, jobs, self._batcher.add_bulk)
            self._metrics.added(call.params["queueName"])
            return job["id"]

        job_id, finished = await add_and_wait(self._events, queue, add_one, wait)
        if finished is None:
            location = f"{call.request.path.decode('utf-8', 'replace')}/{quote(job_id)}"
            return Reply(status=202, body={"id": job_id, "url": location},
                         headers={"Location": location})
        if finished.get("state") == "failed":
            raise ProxyError(JOB_FAILED, f"The job failed: {finished.get('failedReason')}",
                             job=finished)
        return finished

    async def list(self, call: Call) -> Any:
        page = validate_page(call.query)
        requested = validate_states(call.query.get("statuses"))
        queue = self._queues.get(call.params["queueName"])
        states = job_types(requested, await self._queues.layout_of(queue))
        name = call.args.get("name", call.query.get("name"))
        if name is not None:
            if not name:
                raise invalid("name", "name must be a non-empty job name")
            counts, found = await asyncio.gather(
                queue.getJobCounts(*states),
                self._jobs.find_by_name(queue, name, states, page.start, page.length))
            return {"counts": counts, **found}
        counts, jobs = await asyncio.gather(
            queue.getJobCounts(*states), queue.getJobs(states, page.start, page.end)
        )
        return {
            "counts": counts,
            "jobs": [job_json(job) for job in jobs],
            "start": page.start,
            "length": page.length,
        }

    async def get(self, call: Call) -> Any:
        queue = self._queues.get(call.params["queueName"])
        job_id = call.params["jobId"]
        job = await read_job(queue, job_id)
        if job is None:
            raise ProxyError(NOT_FOUND, f"Job {job_id!r} does not exist in this queue.", "jobId")
        return job

    async def logs(self, call: Call) -> Any:
        page = validate_page(call.query)
        queue = self._queues.get(call.params["queueName"])
        return await queue.getJobLogs(call.params["jobId"], page.start, page.end)

    async def progress(self, call: Call) -> Any:
        """Called by a worker endpoint holding the job's lock token."""
        body = call.json()
        if isinstance(body, dict) and set(body) == {"progress"}:
            body = body["progress"]
        if isinstance(body, bool) or not isinstance(body, int | float | dict):
            raise invalid("progress", "progress must be a number or a JSON object")
        await self._updates.update_progress(call.params["queueName"], call.params["jobId"], body)
        return Reply(text="OK")

    async def add_log(self, call: Call) -> Any:
        """Called by a worker endpoint holding the job's lock token."""
        body = call.json()
        if isinstance(body, dict) and set(body) == {"log"}:
            body = body["log"]
        if not isinstance(body, str):
            raise invalid("log", 'the log must be a JSON string or {"log": "..."}')
        await self._updates.add_log(call.params["queueName"], call.params["jobId"], body)
        return Reply(text="OK")
