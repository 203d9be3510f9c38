"""Keeps this instance's running workers in step with the registry in Redis.

Each follower owns its read position in the stream; nothing else moves it (the original
shared it with the registration handler and could skip an announcement). An announcement
only names a queue: the follower then reads the hash, so whatever order announcements are
read in, the worker ends up matching the last registration written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

import redis.asyncio as aredis
import redis.exceptions

from bullmq_proxy.logs import Logger
from bullmq_proxy.workers.store import WorkerStore

log = Logger(namespace="bullmq_proxy.workers.follower")

# Short, so that a stopping instance need not wait long for the read in progress to end.
BLOCK_MS = 250
BATCH = 100
RETRY_DELAY = 1.0

Apply = Callable[[str, str | None], Awaitable[None]]
Reconcile = Callable[[Mapping[str, str]], Awaitable[None]]


def _stream_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class RegistryFollower:
    """Loads every registration, then follows the stream with a blocking read."""

    def __init__(
        self, store: WorkerStore, blocking: aredis.Redis, apply: Apply, reconcile: Reconcile,
    ) -> None:
        self._store = store
        self._blocking = blocking
        self._apply = apply
        self._reconcile = reconcile
        self.last_id = "0"
        self.loaded = False
        self.stopping = False

    async def sync(self) -> None:
        """Read the position before the hash: a change made in between is then both in the
        hash and after the position, and applying it twice is harmless."""
        last_id = await self._store.last_event_id()
        await self._reconcile(await self._store.all())
        self.last_id = last_id
        self.loaded = True

    async def follow(self) -> None:
        """Runs until ``stopping`` is set, which takes at most one blocking read; a Redis failure
        leads to a full resync, since the stream is capped and may have dropped announcements
        meanwhile. (Cancelling is no way to stop it: redis-py can swallow a cancellation that
        arrives during a read.)"""
        synced = self.loaded
        while not self.stopping:
            try:
                if not synced:
                    await self.sync()
                    synced = True
                await self.read_once()
            except Exception as err:
                if self.stopping:
                    # Shutdown closes the clients under a read still in flight: not a fault.
                    return
                if isinstance(err, redis.exceptions.RedisError | OSError):
                    log.warn("Worker registry unavailable ({error}); resyncing in {delay}s",
                             error=err.__class__.__name__, delay=RETRY_DELAY)
                else:
                    log.failure("Unexpected error following the worker registry; resyncing")
            else:
                continue
            synced = False
            await asyncio.sleep(RETRY_DELAY)

    async def _trimmed_past(self) -> bool:
        """True when the stream's oldest entry is newer than the position: announcements
        in between may have been dropped by MAXLEN. (From an empty stream this holds for
        the first announcement too, costing one harmless reload.)"""
        first = await self._store.first_event_id()
        return first is not None and _stream_id(first) > _stream_id(self.last_id)

    async def read_once(self) -> None:
        answer = await self._blocking.xread(
            {self._store.stream: self.last_id}, count=BATCH, block=BLOCK_MS
        )
        if not answer:
            return
        if await self._trimmed_past():
            # From an empty stream the first announcement always looks trimmed: not news.
            say = log.debug if self.last_id == "0" else log.warn
            say("Worker registry announcements were trimmed before this instance read "
                "them; reloading every registration")
            await self.sync()
            return
        _, entries = answer[0]
        queues: dict[str, None] = {}
        for entry_id, fields in entries:
            queue = fields.get("worker")
            if queue:
                queues[queue] = None
            self.last_id = entry_id
        for queue in queues:
            await self._apply(queue, await self._store.get(queue))
