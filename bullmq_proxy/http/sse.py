"""Queue events as Server-Sent Events: ``GET /queues/:q/events?events=completed,failed``.

Each event carries ``id:`` its Redis stream id, so a client that reconnects with
``Last-Event-ID`` (browsers' EventSource does) resumes without a gap: the entries after that
id are read from the stream first, then the live feed follows, each event once. Live events
come from the queue's shared feed (one Redis connection per queue, however many listen). A
comment line every 15 s keeps proxies from closing an idle stream. A reader that falls
behind by more than ``MAX_BACKLOG`` events is closed rather than buffered without bound;
its client reconnects with its last id and loses nothing the stream still holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any

import orjson
from bullmq.queue_events import _JSON_DECODE_FIELDS
from twisted.internet.interfaces import IPushProducer
from twisted.web.iweb import IRequest
from zope.interface import implementer

from bullmq_proxy.core.events import EVENT_NAMES, EventsHub
from bullmq_proxy.errors import invalid
from bullmq_proxy.http.router import Call, Route, Stream
from bullmq_proxy.queues import QueueRegistry
from bullmq_proxy.schemas.admin import obj

HEARTBEAT_SECONDS = 15.0
MAX_BACKLOG = 1000
# Entries read back per XRANGE when resuming.
RESUME_BATCH = 500
_STREAM_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
EVENTS_QUERY = obj({
    "events": {"type": "string", "description": "comma-separated event names (default: all)"},
    "lastEventId": {"type": "string", "description": "resume after this stream id (for "
                                                      "clients that cannot send Last-Event-ID)"},
})


def _order(stream_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = stream_id.partition("-")
    return int(milliseconds), int(sequence or 0)


def frame(stream_id: str, event: str, data: Any) -> bytes:
    return (b"id: " + stream_id.encode() + b"\nevent: " + event.encode() + b"\ndata: "
            + orjson.dumps(data) + b"\n\n")


def entry_event(fields: dict[str, str]) -> tuple[str, dict[str, Any]] | None:
    """An events-stream entry as QueueEvents reads it: its name and its decoded fields."""
    args = dict(fields)
    event = args.pop("event", None)
    if not event:
        return None
    field = _JSON_DECODE_FIELDS.get(event)
    if field and field in args:
        with contextlib.suppress(orjson.JSONDecodeError):
            args[field] = orjson.loads(args[field])
    return event, args


@implementer(IPushProducer)
class _Valve:
    """Tells the stream when the client's connection is full."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.open.set()

    def pauseProducing(self) -> None:
        self.open.clear()

    def resumeProducing(self) -> None:
        self.open.set()

    def stopProducing(self) -> None:
        self.open.set()


class EventStream:
    def __init__(self, events: EventsHub, queues: QueueRegistry, queue: str,
                 names: frozenset[str], last_id: str | None) -> None:
        self._hub = events
        self._queues = queues
        self._queue = queue
        self._names = names
        self._last = last_id
        self._live: asyncio.Queue[tuple[str, str, Any] | None] = asyncio.Queue()
        self._ended = False

    def _listen(self, event: str, args: list[Any]) -> None:
        if self._ended or event not in self._names or not args:
            return
        stream_id = args[-1] if isinstance(args[-1], str) else None
        if stream_id is None:
            return
        if self._live.qsize() >= MAX_BACKLOG:
            self._ended = True
            self._live.put_nowait(None)  # too slow: ends the stream
            return
        self._live.put_nowait((stream_id, event, args[0] if len(args) > 1 else {}))

    async def serve(self, request: IRequest) -> None:
        gone = asyncio.Event()
        request.notifyFinish().addBoth(lambda _: gone.set())
        valve = _Valve()
        request.registerProducer(valve, True)
        feed = self._hub.subscribe(self._queue, self._listen)
        try:
            await feed.ready
            request.write(b": connected\n\n")
            if self._last is not None:
                await self._resume(request)
            while not gone.is_set():
                try:
                    item = await asyncio.wait_for(self._live.get(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    request.write(b": keepalive\n\n")
                    continue
                if item is None:
                    break
                stream_id, event, data = item
                if self._last is not None and _order(stream_id) <= _order(self._last):
                    continue
                self._last = stream_id
                request.write(frame(stream_id, event, data))
                if not valve.open.is_set():
                    await self._drained(valve, gone)
        finally:
            self._hub.unsubscribe(self._queue, self._listen)
            with contextlib.suppress(Exception):
                request.unregisterProducer()

    async def _drained(self, valve: _Valve, gone: asyncio.Event) -> None:
        """Wait for the connection to take more; events meanwhile wait in the bounded
        queue (``_listen`` ends the stream when it is full)."""
        waiting = asyncio.ensure_future(valve.open.wait())
        left = asyncio.ensure_future(gone.wait())
        await asyncio.wait({waiting, left}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        left.cancel()

    async def _resume(self, request: IRequest) -> None:
        """The stream's entries after ``Last-Event-ID``, before the live ones."""
        key = self._queues.key(self._queue, "events")
        start = f"({self._last}"
        while True:
            entries = await self._queues.client.xrange(key, start, "+", count=RESUME_BATCH)
            for stream_id, fields in entries:
                found = entry_event(fields)
                self._last = stream_id
                if found is not None and found[0] in self._names:
                    request.write(frame(stream_id, found[0], found[1]))
            if len(entries) < RESUME_BATCH:
                return
            start = f"({entries[-1][0]}"


def event_routes(events: EventsHub, queues: QueueRegistry) -> list[Route]:
    async def stream(call: Call) -> Any:
        raw = call.args.get("events")
        names = frozenset(EVENT_NAMES)
        if raw:
            names = frozenset(name.strip() for name in raw.split(",") if name.strip())
            unknown = sorted(names - set(EVENT_NAMES))
            if unknown:
                raise invalid("events", f"events: {unknown[0]!r} is not one of "
                                        f"{', '.join(EVENT_NAMES)}")
        header = call.request.getHeader(b"last-event-id")
        last = header.decode("ascii", "replace") if header is not None else \
            call.args.get("lastEventId")
        if last is not None and not _STREAM_ID.match(last):
            raise invalid("Last-Event-ID", "Last-Event-ID must be an event id this stream "
                                           "sent, like 1700000000000-0")
        return Stream(b"text/event-stream; charset=utf-8",
                      EventStream(events, queues, call.params["queueName"], names,
                                  last).serve)

    return [Route(b"GET", "/queues/{queueName}/events", stream, query=EVENTS_QUERY,
                  response={"type": "string", "description": "text/event-stream: id, event "
                                                             "and data (JSON) per event"},
                  media="text/event-stream",
                  summary="Queue events as Server-Sent Events (Last-Event-ID resumes)")]
