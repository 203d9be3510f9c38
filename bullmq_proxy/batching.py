"""Coalesce the job adds of concurrent requests into pipelined Redis round trips.

One ``addBulk`` per request costs a MULTI/EXEC pipeline, a SCRIPT EXISTS round trip and a
pooled connection each; under load those, not Redis, bound the proxy. ``AddBatcher`` queues
each request's jobs and sends everything queued during one event-loop turn as one
non-transactional pipeline. While that pipeline is in flight, new requests queue up for the
next one, so batches grow with the load and a lone request still goes out at once.

Each request's jobs stay contiguous and in order in the pipeline, and each request gets back
its own jobs or its own first error: one bad request never fails the others in its batch.
A request of several jobs is wrapped in MULTI/EXEC within the shared pipeline, so it is added
all or none if the connection drops or the proxy dies midway. A caller that stops waiting (a
request timeout) does not take its jobs back: like an ``addBulk`` already sent, they may still
be added.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any

import attrs
import redis.asyncio as aredis
from bullmq import Job, Queue
from bullmq.utils import is_redis_cluster
from redis.asyncio.client import Pipeline

from bullmq_proxy.redis import known_scripts
from bullmq_proxy.redis.cluster import add_each

MAX_BATCH_JOBS = 2000


@attrs.define
class _Pending:
    """One request's jobs waiting for a pipeline, and where its answer goes."""

    queue: Queue
    jobs: list[Job]
    answer: asyncio.Future[list[Job]]
    first: int = 0


def _new_jobs(queue: Queue, specs: Sequence[dict[str, Any]]) -> list[Job]:
    """Job objects as ``Queue.addBulk`` builds them: queue defaults under each job's opts."""
    jobs = []
    for spec in specs:
        opts = {**queue.jobsOpts, **(spec.get("opts") or {})}
        jobs.append(Job(queue=queue, name=spec.get("name"), data=spec.get("data"), opts=opts,
                        job_id=opts.get("jobId")))
    return jobs


def _failure(pending: _Pending, job: Job, result: Any) -> Exception | None:
    """The error that a script reply stands for, if any."""
    if isinstance(result, Exception):
        return result
    if isinstance(result, int) and result < 0:
        scripts = pending.queue.backend.scripts
        return scripts.finishedErrors({"code": result, "parentKey": job.parentKey,
                                       "command": "addJob"})
    return None


class AddBatcher:
    """Adds jobs like ``Queue.addBulk``, sharing Redis round trips between callers."""

    def __init__(self, client: aredis.Redis, max_batch_jobs: int = MAX_BATCH_JOBS) -> None:
        self._client = client
        self._max_batch_jobs = max_batch_jobs
        self._waiting: list[_Pending] = []
        self._sending = False
        self._cluster = is_redis_cluster(client)

    def add_bulk(self, queue: Queue, specs: Sequence[dict[str, Any]]) -> Awaitable[list[Job]]:
        """Add ``specs`` (``{"name", "data", "opts"}`` dicts) in order; the added jobs.

        The answer is the batch's future itself, not a coroutine around it: one coroutine
        fewer for every add to start and resume."""
        jobs = _new_jobs(queue, specs)
        loop = asyncio.get_running_loop()
        if not jobs:
            empty: asyncio.Future[list[Job]] = loop.create_future()
            empty.set_result(jobs)
            return empty
        if self._cluster:
            return add_each(jobs)
        pending = _Pending(queue, jobs, loop.create_future())
        self._waiting.append(pending)
        if not self._sending:
            self._sending = True
            # Sent at the end of this turn, so that requests parsed in it share the pipeline.
            loop.call_soon(self._send_next, loop)
        return pending.answer

    def _take_batch(self) -> list[_Pending]:
        taken, size = 0, 0
        for pending in self._waiting:
            if taken and size + len(pending.jobs) > self._max_batch_jobs:
                break
            taken += 1
            size += len(pending.jobs)
        batch, self._waiting = self._waiting[:taken], self._waiting[taken:]
        return batch

    def _send_next(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._waiting:
            self._sending = False
            return
        task = loop.create_task(self._send(self._take_batch()))
        task.add_done_callback(lambda _: self._send_next(loop))

    async def _send(self, batch: list[_Pending]) -> None:
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                queued = [pending for pending in batch if await self._queue_commands(pipe, pending)]
                if queued:
                    results = await known_scripts.execute(self._client, pipe)
                    for pending in queued:
                        self._answer(pending, self._results_of(pending, results))
        except Exception as err:
            # Redis unreachable, or the pipeline itself failed: every caller still waiting
            # gets the error, as it would from its own addBulk.
            for pending in batch:
                if not pending.answer.done():
                    pending.answer.set_exception(err)
        finally:
            for pending in batch:
                if not pending.answer.done():
                    pending.answer.cancel()

    @staticmethod
    def _results_of(pending: _Pending, results: list[Any]) -> list[Any]:
        """The script replies of one request's adds: past MULTI and the QUEUED replies, the
        EXEC reply holds them; an EXEC that failed or was aborted fails every job."""
        if len(pending.jobs) == 1:
            return results[pending.first:pending.first + 1]
        answer = results[pending.first + len(pending.jobs) + 1]
        if isinstance(answer, list):
            return answer
        failure = answer if isinstance(answer, Exception) else \
            ConnectionError("the transaction of a bulk add was aborted")
        return [failure] * len(pending.jobs)

    async def _queue_commands(self, pipe: Pipeline, pending: _Pending) -> bool:
        """Queue one request's adds; on a failure, drop what it queued and answer it.

        A request of several jobs is a MULTI/EXEC inside the shared pipeline, so a bulk add
        is all or none if the connection drops or the proxy dies midway; adds of a single
        job are atomic already (one script)."""
        pending.first = len(pipe.command_stack)
        transaction = len(pending.jobs) > 1
        try:
            if transaction:
                pipe.execute_command("MULTI")
            for job in pending.jobs:
                await pending.queue.backend.scripts.addJob(job, pipe)
            if transaction:
                pipe.execute_command("EXEC")
        except Exception as err:
            del pipe.command_stack[pending.first:]
            if not pending.answer.done():
                pending.answer.set_exception(err)
            return False
        return True

    @staticmethod
    def _answer(pending: _Pending, results: list[Any]) -> None:
        if pending.answer.done():
            return
        for job, result in zip(pending.jobs, results, strict=True):
            error = _failure(pending, job, result)
            if error is not None:
                pending.answer.set_exception(error)
                return
            job.id = result
        pending.answer.set_result(pending.jobs)
