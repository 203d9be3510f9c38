"""``QueueEventsClient``: a queue's events, as an async iterator or through callbacks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlencode

import attrs

from bullmq_proxy.client.connection import Connection, socket_url, unwrap


@attrs.frozen
class Event:
    """``name`` (completed, failed, progress...) and ``args`` as BullMQ listeners get them:
    the event's fields (``jobId``, ``returnvalue``...) and the stream entry id."""

    name: str
    args: list[Any]


class QueueEventsClient:
    """Subscribes to ``events`` (every event when empty); the subscription is part of the
    socket's URL, so it holds across reconnects. Events queue up for the iterator until
    ``max_queued``; past it the oldest are dropped rather than memory growing."""

    def __init__(self, url: str, queue: str, token: str, events: tuple[str, ...] = (), *,
                 max_queued: int = 10_000) -> None:
        query = urlencode({"events": ",".join(events)}) if events else ""
        self._callbacks: dict[str, list[Callable[..., Any]]] = {}
        self._queue: asyncio.Queue[Event] = asyncio.Queue(max_queued)
        self._connection = Connection(socket_url(url, queue, "/events", query), token,
                                      self._received)

    async def ready(self) -> list[str]:
        """Wait until the proxy delivers events; the names this socket receives."""
        return unwrap(await self._connection.request({"fn": "on", "args": []}))

    async def subscribe(self, *events: str) -> list[str]:
        return unwrap(await self._connection.request({"fn": "on", "args": list(events)}))

    async def unsubscribe(self, *events: str) -> list[str]:
        return unwrap(await self._connection.request({"fn": "off", "args": list(events)}))

    def on(self, event: str, callback: Callable[..., Any]) -> None:
        """``callback(*args)`` for each ``event``, as with BullMQ's QueueEvents."""
        self._callbacks.setdefault(event, []).append(callback)

    def _received(self, message: dict[str, Any]) -> None:
        data = message.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("event"), str):
            return
        event = Event(data["event"], list(data.get("args") or []))
        for callback in self._callbacks.get(event.name, ()):
            callback(*event.args)
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(event)

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            yield await self._queue.get()

    async def close(self) -> None:
        await self._connection.close()
