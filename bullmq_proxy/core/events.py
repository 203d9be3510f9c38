"""Queue events, read once per queue however many listen: one bullmq QueueEvents per queue
with listeners (WebSocket event sockets, Server-Sent Events, pull clients waiting for a job),
opened for the first and closed after the last.

A feed starts reading the queue's event stream right after its last entry at the moment it
opens; ``Feed.ready`` tells when it is live, so a listener that waits for it sees every event
that follows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any

import redis.asyncio as aredis
from bullmq import QueueEvents

from bullmq_proxy.config import RedisSettings
from bullmq_proxy.logs import Logger
from bullmq_proxy.queues import QueueRegistry
from bullmq_proxy.redis.closing import close_blocking
from bullmq_proxy.redis.connection import RedisClient, close_client, worker_client

log = Logger(namespace="bullmq_proxy.core.events")

# QueueEvents' events that carry queue news (``error`` is the local listener's own).
EVENT_NAMES = (
    "active", "added", "cleaned", "completed", "debounced", "deduplicated", "delayed",
    "drained", "duplicated", "failed", "paused", "progress", "removed", "resumed",
    "retries-exhausted", "stalled", "waiting", "waiting-children",
)

Listener = Callable[[str, list[Any]], None]


class Feed:
    """One queue's QueueEvents, shared by every socket listening to that queue."""

    def __init__(self, queue: str, redis: aredis.Redis, queues: QueueRegistry,
                 connection: RedisClient) -> None:
        self.listeners: set[Listener] = set()
        self._connection = connection
        self.ready = asyncio.ensure_future(self._open(queue, redis, queues, connection))

    async def _open(self, queue: str, redis: aredis.Redis, queues: QueueRegistry,
                    connection: RedisClient) -> QueueEvents:
        last = await redis.xrevrange(queues.key(queue, "events"), count=1)
        events = QueueEvents(queue, {
            "connection": connection, "prefix": queues.prefix,
            "lastEventId": last[0][0] if last else "0-0",
        })
        for name in EVENT_NAMES:
            events.on(name, partial(self._emit, name))
        events.on("error", lambda error: log.warn(
            "Queue events of {queue} hit an error: {error}", queue=queue,
            error=f"{error.__class__.__name__}: {error}"))
        return events

    def _emit(self, name: str, *args: Any) -> None:
        for listener in list(self.listeners):
            listener(name, list(args))

    async def close(self) -> None:
        self.ready.cancel()
        try:
            events = await self.ready
        except (asyncio.CancelledError, Exception):
            events = None
        if events is not None:
            consumer = events._consumer_task  # close() forgets it before awaiting it
            await close_blocking(events.close(), lambda: consumer)
        await close_client(self._connection)


class EventsHub:
    """Opens a queue's feed for its first listener and closes it after its last."""

    def __init__(self, redis: aredis.Redis, queues: QueueRegistry,
                 settings: RedisSettings) -> None:
        self._redis = redis
        self._queues = queues
        self._settings = settings
        self._feeds: dict[str, Feed] = {}
        self._closing: set[asyncio.Future[None]] = set()

    def subscribe(self, queue: str, listener: Listener) -> Feed:
        feed = self._feeds.get(queue)
        if feed is None:
            feed = self._feeds[queue] = Feed(queue, self._redis, self._queues,
                                             worker_client(self._settings, 1))
        feed.listeners.add(listener)
        return feed

    def unsubscribe(self, queue: str, listener: Listener) -> None:
        feed = self._feeds.get(queue)
        if feed is None:
            return
        feed.listeners.discard(listener)
        if not feed.listeners:
            del self._feeds[queue]
            closing = asyncio.ensure_future(feed.close())
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        feeds, self._feeds = list(self._feeds.values()), {}
        await asyncio.gather(*(feed.close() for feed in feeds), *self._closing,
                             return_exceptions=True)
