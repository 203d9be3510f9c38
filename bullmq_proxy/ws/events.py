"""The queue-events socket, fed by one shared bullmq QueueEvents per queue.

A feed starts reading the queue's event stream right after its last entry at the moment
it opens; a socket's ``on`` reply is sent once its feed is live, so a client that waits
for it sees every event that follows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any

import redis.asyncio as aredis
from bullmq import QueueEvents
from zope.interface import implementer

from bullmq_proxy.config import RedisSettings
from bullmq_proxy.errors import ProxyError, invalid
from bullmq_proxy.logs import Logger
from bullmq_proxy.queues import QueueRegistry
from bullmq_proxy.redis.closing import close_blocking
from bullmq_proxy.redis.connection import RedisClient, close_client, worker_client
from bullmq_proxy.ws.messages import Call, encode, err, ok, read_call
from bullmq_proxy.ws.paths import EVENT_NAMES, validate_events
from bullmq_proxy.ws.queue import reply_error
from bullmq_proxy.ws.session import IChannel, ISession

log = Logger(namespace="bullmq_proxy.ws.events")

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


@implementer(ISession)
class EventsSession:
    def __init__(self, channel: IChannel, hub: EventsHub, queue: str,
                 events: tuple[str, ...]) -> None:
        self._channel = channel
        self._hub = hub
        self._queue = queue
        self._events = set(events)
        self._feed = hub.subscribe(queue, self._deliver)

    def _deliver(self, name: str, args: list[Any]) -> None:
        if name in self._events:
            self._channel.send(encode(0, {"event": name, "args": args}))

    def received(self, payload: bytes) -> None:
        call = read_call(payload, self._channel.send)
        if call is None:
            return
        try:
            if call.fn not in ("on", "off"):
                raise invalid("fn", 'fn must be "on" or "off"')
            if not all(isinstance(name, str) for name in call.args):
                raise invalid("args", "args must be event names")
            names = validate_events(call.args, "args")
        except ProxyError as error:
            self._channel.send(err(call.id, error))
            return
        if call.fn == "on":
            self._events.update(names)
        else:
            self._events.difference_update(names)
        self._feed.ready.add_done_callback(partial(self._acknowledge, call))

    def _acknowledge(self, call: Call, ready: asyncio.Future[Any]) -> None:
        failure = None if ready.cancelled() else ready.exception()
        if failure is not None:
            self._channel.send(err(call.id, reply_error(failure, "ws events")))
        else:
            self._channel.send(ok(call.id, sorted(self._events)))

    def congested(self, paused: bool) -> None:
        """Events keep coming whatever the client reads; the outbox bounds what waits."""

    def closed(self) -> Any:
        self._hub.unsubscribe(self._queue, self._deliver)
        return asyncio.sleep(0)
