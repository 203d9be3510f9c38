"""The queue-events socket, fed by the queue's shared feed (``core/events.py``); a socket's
``on`` reply is sent once its feed is live, so a client that waits for it sees every event
that follows."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from zope.interface import implementer

from bullmq_proxy.core.events import EventsHub
from bullmq_proxy.errors import ProxyError, invalid
from bullmq_proxy.ws.messages import Call, encode, err, ok, read_call
from bullmq_proxy.ws.paths import validate_events
from bullmq_proxy.ws.queue import reply_error
from bullmq_proxy.ws.session import IChannel, ISession


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
