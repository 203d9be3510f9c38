"""bullmq's Worker with a leaner run loop, on Redis connections shared by every worker of the
process.

Everything that decides what happens to a job stays bullmq's own: the Lua scripts, locks and
their renewal (``lockManager``, whose loop runs only while the worker holds jobs:
``locks.py``), the stalled-job check (bullmq's, run for every worker of the
process by ``stalled.StalledChecks``), attempts and backoff (``Job.moveToFailed``) and job
schedulers (``nextJobFromJobData``). What differs:

- Slots are tasks only while they work. A slot takes a job, processes it and takes the next
  one in the same Redis call that completes it (``moveToFinished`` with fetch-next, as Node
  BullMQ does); it ends when it finds none. A job taken while slots are free starts one more
  slot, up to the concurrency. An idle worker has no task at all.
- No connection of its own: commands go through the process's bounded pool, and a drained
  worker waits for its queue's marker as one key of the process's shared wait
  (``redis/markers.py``), which calls ``marker()``. A ``listed`` worker (one that
  ``Queue.getWorkers()`` must list) waits on one connection of its own, named as Node names
  a worker's.
- A delayed job's due time, or the end of a rate limit, wakes the worker with a timer of the
  event loop rather than a BZPOPMIN timeout; drained queues are not polled otherwise, since
  every BullMQ script that makes a job available adds a marker.

No marker may be lost between the wait and the slots: each counts in ``_signals``. A fetch
that finds nothing fetches again when a marker came while it ran; a marker that comes while
no fetch runs starts a slot; with every slot busy processing, the marker is put back (their
next fetches all start after it).

``close()`` keeps bullmq's meaning: the slots finish the job they hold and stop; ``close``
with ``cancelProcessing()`` cancels them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import bullmq.worker as bullmq_worker
from bullmq import Job, Worker
from bullmq.backends.redis_backend import RedisBackend
from bullmq.custom_errors import DelayedError, UnrecoverableError, WaitingChildrenError

from bullmq_proxy.core import moves
from bullmq_proxy.core.pull import new_token
from bullmq_proxy.jobs import job_from_hash
from bullmq_proxy.redis.client_names import name_clients_like_node
from bullmq_proxy.redis.coalescing import coalesce
from bullmq_proxy.redis.layout import speak_layout
from bullmq_proxy.workers.locks import IdleLockManager

if TYPE_CHECKING:
    from bullmq_proxy.workers.connections import WorkerConnections

Processor = Callable[[Job, str], Awaitable[Any]]
T = TypeVar("T")


@contextlib.contextmanager
def _backend_given(backend: RedisBackend) -> Iterator[None]:
    """Make bullmq's ``Worker.__init__`` take ``backend`` rather than build its own, with two
    connections that read and register every Lua script (0.57 MB and 7 ms a worker)."""
    build = bullmq_worker.create_backend
    bullmq_worker.create_backend = lambda *_args, **_kwargs: backend
    try:
        yield
    finally:
        bullmq_worker.create_backend = build


# bullmq tries a call that failed with anything but a connection error again after 0.1 s, for
# ever: ten errors a second per slot when Redis keeps refusing a script. Back off instead.
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0


class FetchNextWorker(Worker):
    def __init__(self, name: str, processor: Processor, opts: dict[str, Any],
                 connections: WorkerConnections, *, listed: bool = False,
                 layout: str = "auto") -> None:
        backend = RedisBackend(name, connections.bullmq_connection(),
                               prefix=opts.get("prefix", "bull"), owns_connection=False)
        with _backend_given(backend):
            super().__init__(name, processor,
                             {**opts, "autorun": False, "connection": connections.pool})
        speak_layout(self.backend, layout)
        coalesce(self.backend)
        name_clients_like_node(self.backend, self.prefix, name)
        self.clientName = self.backend.clientName(
            f":w:{self.workerName}" if self.workerName else "")
        self.lockManager = IdleLockManager(
            self, lock_renew_time=self.opts["lockRenewTime"],
            lock_duration=self.opts["lockDuration"], worker_id=self.id,
            worker_name=self.workerName)
        self._connections = connections
        self._stalled = connections.stalled
        self._listed = listed
        self._markers = connections.own_markers(self.clientName) if listed \
            else connections.markers
        self._marker = self.keys["marker"]
        self._slots = 0
        self._fetching = 0
        self._signals = 0
        self._watching = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        # Calls that failed in a row, all slots together; any call that works resets it.
        self.fetch_failures = 0
        self._closed = asyncio.Event()
        connections.attach(self)
        self._run = asyncio.ensure_future(self.run())

    async def run(self) -> None:
        """Start the worker; it runs until ``close()``, in tasks of its own."""
        if self.running:
            raise RuntimeError("the worker is already running")
        self.running = True
        if self.closing:
            return
        if self._listed:
            # Listed from the start, as a bullmq worker names its connections at once; a
            # Redis that is away is retried by the wait itself.
            with contextlib.suppress(Exception):
                await self._markers.connect()
            if self.closing:
                return
        self._markers.register(self._marker, self)
        self._stalled.add(self)
        self._spawn()

    async def close(self, force: bool = False) -> None:
        self.closing = True
        self._closed.set()
        self._markers.unregister(self._marker, self)
        self._watching = False
        self._stalled.remove(self)
        if self._timer is not None:
            self._timer.cancel()
        try:
            await super().close(force)
        finally:
            self.running = False
            if self._listed:
                await self._markers.close()
            self._connections.detach(self)

    def marker(self, score: float) -> bool:
        """The queue's marker, from the wait; True when the worker acts on it."""
        if self.closing:
            return False
        if score > time.time() * 1000:
            self._wake_at(score)  # a delayed job's marker: due then
            return True
        return self._poke()

    # --- slots ---------------------------------------------------------------------------

    def _poke(self) -> bool:
        """A marker or a due time: a job may be waiting."""
        if self.closing:
            return False
        self._signals += 1
        if self._fetching:
            return True  # that fetch fetches again if it finds nothing
        if self._slots < self.opts["concurrency"]:
            self._spawn()
            return True
        self._update_watch()
        return False

    def _spawn(self) -> None:
        self._slots += 1
        slot = asyncio.ensure_future(self._slot())
        self.processing.add(slot)
        slot.add_done_callback(self.processing.discard)
        self._update_watch()

    def _more(self) -> None:
        """A job was taken: another may be waiting for a free slot."""
        if not self.closing and self._slots < self.opts["concurrency"]:
            self._spawn()

    def _update_watch(self) -> None:
        """Wait for the marker while the queue is drained and a slot is free."""
        wanted = not self.closing and self.drained and self._slots < self.opts["concurrency"]
        if wanted != self._watching:
            self._watching = wanted
            if wanted:
                self._markers.watch(self._marker, self)
            else:
                self._markers.unwatch(self._marker, self)

    async def _slot(self) -> None:
        job: Job | None = None
        token = ""
        seen: int | None = None  # markers counted when the last fetch that found none began
        try:
            while True:
                if job is not None:
                    # Also after close(): a job taken is active under this slot's lock.
                    job, seen = await self._process(job, token)
                elif self.closing or seen == self._signals:
                    return
                else:
                    seen = self._signals
                    # A new token for every job taken this way (a retried job gets a new
                    # one), as bullmq does; a job fetched with a completion keeps the token,
                    # as in Node (it goes to the same endpoint). 128 random bits: a token
                    # seen by one endpoint says nothing of any other.
                    token = new_token()
                    job = await self._take(token)
        finally:
            self._slots -= 1
            self._update_watch()

    async def _take(self, token: str) -> Job | None:
        self._fetching += 1
        try:
            moved = await self._retrying(lambda: moves.take(self, token, self.opts))
        finally:
            self._fetching -= 1
        if moved is None:
            return None
        job = await self._next_job(moved, token)
        if job is not None:
            self.emit("active", job, "waiting")
        return job

    async def _next_job(self, moved: list[Any], token: str) -> Job | None:
        data, job_id, limit_until, delay_until = moved
        if data and not data.get("rjk"):
            job = self._taken(data, job_id, limit_until or 0, delay_until or 0, token)
        else:
            # None, or a scheduler's job: bullmq's own steps, which make its next iteration.
            job = await self.nextJobFromJobData(data, job_id, limit_until or 0,
                                                delay_until or 0, token)
        if job is not None:
            self._more()
        elif limit_until and limit_until > 0:
            self._wake_at(time.time() * 1000 + limit_until)  # a rate limit's remaining ms
        elif delay_until and delay_until > 0:
            self._wake_at(delay_until)  # the next delayed job's timestamp
        self._update_watch()
        return job

    def _taken(self, data: dict[str, Any], job_id: str, limit_until: int, delay_until: int,
               token: str) -> Job:
        """``nextJobFromJobData`` for a job that came with the fetch, built by
        ``job_from_hash``."""
        self.limitUntil = max(limit_until, 0) or 0
        if delay_until:
            self.blockUntil = max(int(delay_until), 0) or 0
        self.drained = False
        job = job_from_hash(self, data, job_id)
        job.token = token
        return job

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T | None:
        """bullmq's retry: connection errors are tried again after ``runRetryDelay``, others
        are reported (an ``error`` event) and tried again after a delay that doubles from
        0.5 s to 30 s while they go on. None once closing."""
        while not self.closing:
            try:
                result = await self.retryIfFailed(
                    call, {"delay_in_ms": self.opts["runRetryDelay"]})
            except Exception:
                self.fetch_failures += 1
                delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** min(self.fetch_failures - 1, 10))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), delay)
                continue
            self.fetch_failures = 0
            return result
        return None

    def _wake_at(self, at_ms: float) -> None:
        if self._timer is not None and self._timer_at <= at_ms:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at_ms
        delay = max(0.0, (at_ms - time.time() * 1000) / 1000)
        self._timer = asyncio.get_running_loop().call_later(delay, self._due)

    def _due(self) -> None:
        self._timer = None
        self._poke()

    async def _process(self, job: Job, token: str) -> tuple[Job | None, int | None]:
        """Run the processor on ``job`` and settle it; returns the next job when completing it
        took one, and the marker count when that fetch began (None: fetch afresh)."""
        for option in ("removeOnComplete", "removeOnFail"):
            if option not in job.opts and option in self.opts:
                job.opts[option] = self.opts[option]
        self.jobs.add((job, token))
        self.lockManager.track_job(job.id, token, int(time.time() * 1000))
        try:
            if job.deferredFailure:
                failure = UnrecoverableError(job.deferredFailure)
                await moves.fail(job, token, failure)
                self.emit("failed", job, failure)
                return None, None
            result = await self.processor(job, token)
            if self.forceClosing:
                return None, None
            fetch_next = not self.closing
            seen = self._signals
            self._fetching += fetch_next
            try:
                moved = await moves.complete(job, token, result, fetch_next=fetch_next)
            finally:
                self._fetching -= fetch_next
            job.returnvalue = result
            job.attemptsMade += 1
            self.emit("completed", job, result)
            if not fetch_next:
                return None, None
            return await self._next_job(moved["result"] or [None] * 4, token), seen
        except (DelayedError, WaitingChildrenError):
            return None, None
        except Exception as err:
            try:
                if not self.forceClosing:
                    await moves.fail(job, token, err)
                self.emit("failed", job, err)
            except Exception as failure:
                self.emit("error", failure, job)
            return None, None
        finally:
            self.jobs.discard((job, token))
            self.lockManager.untrack_job(job.id)
