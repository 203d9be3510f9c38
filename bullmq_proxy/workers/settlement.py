"""Asynchronous completion: an endpoint that answers 202 settles the job later itself.

The job stays active under its lock meanwhile; the worker keeps renewing the lock while it
holds the job here, until the job's deadline (``endpoint.asyncTimeout`` after the 202, or what
``POST .../lock`` set since). The deadline lives in Redis, so that the call that settles or
extends the job may reach any proxy instance: the holding instance notices within a poll
interval, or at once when the call reached it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis.asyncio as aredis
import redis.exceptions
from bullmq import Job
from bullmq.custom_errors import UnrecoverableError

from bullmq_proxy.core import moves
from bullmq_proxy.errors import CONFLICT, NOT_FOUND, ProxyError
from bullmq_proxy.queues import QueueRegistry

POLL_SECONDS = 0.5


class Settled(Exception):
    """The job was completed or failed through the job API while held."""


class DeadlinePassed(Exception):
    """The endpoint neither settled nor extended the job in time."""


class Settlements:
    def __init__(self, client: aredis.Redis, queues: QueueRegistry,
                 observe: Callable[[str, bool], None] | None = None) -> None:
        self._client = client
        self._queues = queues
        self._observe = observe  # told (queue, completed) of each job settled here
        self._waiters: dict[tuple[str, str], asyncio.Event] = {}

    def _deadline_key(self, queue: str, job_id: str) -> str:
        return self._queues.key(queue, job_id, "proxy-deadline")

    async def set_deadline(self, queue: str, job_id: str, duration_ms: int) -> None:
        deadline = int(time.time() * 1000) + duration_ms
        # Expires a little after the deadline so that nothing is left behind.
        await self._client.set(self._deadline_key(queue, job_id), deadline,
                               px=duration_ms + 60_000)
        self._wake(queue, job_id)

    async def has_deadline(self, queue: str, job_id: str) -> bool:
        """Is the job an endpoint's 202 job, held by some instance's worker?"""
        return bool(await self._client.exists(self._deadline_key(queue, job_id)))

    async def hold(self, queue: str, job: Job, token: str, timeout_ms: int) -> None:
        """Wait until the job is settled through the API (raises ``Settled``) or its deadline
        passes (raises ``DeadlinePassed``)."""
        job_id = str(job.id)
        key = (queue, job_id)
        event = self._waiters[key] = asyncio.Event()
        lock_key = self._queues.key(queue, job_id, "lock")
        try:
            await self.set_deadline(queue, job_id, timeout_ms)
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), POLL_SECONDS)
                event.clear()
                lock, deadline = await self._client.mget(
                    lock_key, self._deadline_key(queue, job_id))
                if lock != token:
                    raise Settled()
                if deadline is None or int(deadline) <= time.time() * 1000:
                    raise DeadlinePassed()
        finally:
            self._waiters.pop(key, None)
            with contextlib.suppress(redis.exceptions.RedisError):
                await self._client.delete(self._deadline_key(queue, job_id))

    def holds(self, queue: str, job_id: str) -> bool:
        """Is this instance holding the job for its endpoint?"""
        return (queue, job_id) in self._waiters

    def _wake(self, queue: str, job_id: str) -> None:
        event = self._waiters.get((queue, job_id))
        if event is not None:
            event.set()

    async def _job(self, queue: str, job_id: str, worker_opts: Mapping[str, Any]) -> Job:
        job = await Job.fromId(self._queues.get(queue), job_id)
        if job is None:
            raise ProxyError(NOT_FOUND, f"Job {job_id!r} does not exist in this queue.", "jobId")
        # What bullmq's Worker does for the jobs it finishes itself.
        for option in ("removeOnComplete", "removeOnFail"):
            if option not in job.opts and option in worker_opts:
                job.opts[option] = worker_opts[option]
        return job

    async def complete(self, queue: str, job_id: str, token: str, value: Any,
                       worker_opts: Mapping[str, Any]) -> None:
        job = await self._job(queue, job_id, worker_opts)
        await _finishing(moves.complete(job, token, value))
        self._settled(queue, job_id, completed=True)

    async def fail(self, queue: str, job_id: str, token: str, reason: str, retry: bool,
                   worker_opts: Mapping[str, Any]) -> None:
        job = await self._job(queue, job_id, worker_opts)
        error = Exception(reason) if retry else UnrecoverableError(reason)
        await _finishing(moves.fail(job, token, error))
        self._settled(queue, job_id, completed=False)

    def _settled(self, queue: str, job_id: str, *, completed: bool) -> None:
        if self._observe is not None:
            self._observe(queue, completed)
        self._wake(queue, job_id)


async def _finishing(move: Any) -> None:
    try:
        await move
    except (TypeError, UnrecoverableError) as err:
        # BullMQ's scripts refuse (as these) a job that is not active under this lock any more.
        raise ProxyError(CONFLICT, f"The job cannot be settled: {err}") from None
