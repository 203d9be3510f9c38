"""bullmq's Worker with a leaner run loop: one task per slot, fetching the next job in the same
Redis call that completes the previous one.

Everything that decides what happens to a job stays bullmq's own: the Lua scripts, locks and
their renewal (``lockManager``), the stalled-job check, attempts and backoff
(``Job.moveToFailed``), job schedulers (``nextJobFromJobData``) and the blocking wait on the
queue's marker when it is drained (``getNextJob``). Only the loop differs. bullmq's
``Worker.run`` waits on every slot's future with FIRST_COMPLETED and builds a new set after each
completion, work that grows with the concurrency for every job; and it completes a job and takes
the next one in two Redis calls. Node BullMQ fetches the next job with the completion
(``moveToFinished`` with fetch-next), and so does this loop.

``close()`` keeps bullmq's meaning: the slots finish the job they hold and stop; ``close``
with ``cancelProcessing()`` cancels them. It also cancels again the wait on the marker when
redis-py swallowed the first cancellation (see ``redis/closing.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bullmq import Job, Worker
from bullmq.custom_errors import DelayedError, UnrecoverableError, WaitingChildrenError
from bullmq.timer import Timer

from bullmq_proxy.redis.client_names import name_clients_like_node
from bullmq_proxy.redis.closing import close_blocking
from bullmq_proxy.redis.layout import speak_layout

Processor = Callable[[Job, str], Awaitable[Any]]
# bullmq tries a fetch that failed with anything but a connection error again after 0.1 s, for
# ever: ten errors a second per slot when Redis keeps refusing a script. Back off instead.
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0


class FetchNextWorker(Worker):
    def __init__(self, name: str, processor: Processor, opts: dict[str, Any],
                 layout: str = "auto") -> None:
        super().__init__(name, processor, {**opts, "autorun": False})
        speak_layout(self.backend, layout)
        name_clients_like_node(self.backend, self.prefix, name)
        self.clientName = self.backend.clientName(
            f":w:{self.workerName}" if self.workerName else "")
        # Fetches that failed in a row, all slots together; any fetch that works resets it.
        self.fetch_failures = 0
        self._closing = asyncio.Event()
        self._run = asyncio.ensure_future(self.run())

    async def run(self) -> None:
        if self.running:
            raise RuntimeError("the worker is already running")
        self.running = True
        try:
            # Nothing here talks to Redis: a Redis that is away at start is retried by
            # getNextJob (which also names the client), as it is later on.
            if self.closing:
                return
            self.lockManager.start()
            self.stalledCheckTimer = Timer(self.opts["stalledInterval"] / 1000,
                                           self.runStalledJobsCheck, self.emit)
            self.processing = {asyncio.ensure_future(self._slot(f"{self.id}:{n}"))
                               for n in range(self.opts["concurrency"])}
            await asyncio.wait(self.processing)
        finally:
            self.running = False
            timer = getattr(self, "stalledCheckTimer", None)
            if timer is not None:
                timer.stop()
            await self.lockManager.close()

    async def close(self, force: bool = False) -> None:
        self._closing.set()
        await close_blocking(super().close(force), lambda: self.waiting)

    async def _slot(self, slot: str) -> None:
        job: Job | None = None
        token = ""
        fetches = itertools.count()
        while True:
            if job is not None:
                # Also after close(): a job taken is active under this slot's lock.
                job = await self._process(job, token)
            elif self.closing:
                return
            else:
                # A new token for every job taken this way (a retried job gets a new one), as
                # bullmq does; a job fetched with a completion keeps the token, as in Node.
                token = f"{slot}:{next(fetches)}"
                job = await self._next(token)

    async def _next(self, token: str) -> Job | None:
        job = await self.retryIfFailed(lambda: self._fetch(token), {
            "delay_in_ms": self.opts["runRetryDelay"], "only_emit_error": True})
        if job is None and self.fetch_failures:
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** min(self.fetch_failures - 1, 10))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), delay)
            return None
        waiting = self.waiting
        if job is None and waiting is not None:
            # Another slot is blocked on the queue's marker: wait for it rather than poll.
            await asyncio.wait({waiting})
        return job

    async def _fetch(self, token: str) -> Job | None:
        try:
            job = await self.getNextJob(token)
        except Exception:
            self.fetch_failures += 1
            raise
        self.fetch_failures = 0
        return job

    async def _process(self, job: Job, token: str) -> Job | None:
        """Run the processor on ``job`` and settle it; returns the next job when completing it
        took one."""
        for option in ("removeOnComplete", "removeOnFail"):
            if option not in job.opts and option in self.opts:
                job.opts[option] = self.opts[option]
        self.jobs.add((job, token))
        self.lockManager.track_job(job.id, token, int(time.time() * 1000))
        try:
            if job.deferredFailure:
                failure = UnrecoverableError(job.deferredFailure)
                await job.moveToFailed(failure, token)
                self.emit("failed", job, failure)
                return None
            result = await self.processor(job, token)
            if self.forceClosing:
                return None
            moved = await self.backend.moveToCompleted(
                job, result, job.opts.get("removeOnComplete", False), token,
                fetch_next=not self.closing)
            job.returnvalue = result
            job.attemptsMade += 1
            self.emit("completed", job, result)
            data, job_id, limit_until, delay_until = moved["result"] or (None,) * 4
            return await self.nextJobFromJobData(data, job_id, limit_until or 0,
                                                 delay_until or 0, token)
        except (DelayedError, WaitingChildrenError):
            return None
        except Exception as err:
            try:
                if not self.forceClosing:
                    await job.moveToFailed(err, token)
                self.emit("failed", job, err)
            except Exception as failure:
                self.emit("error", failure, job)
            return None
        finally:
            self.jobs.discard((job, token))
            self.lockManager.untrack_job(job.id)
