"""The request object of the lean HTTP channel (``http/channel.py``).

It offers the part of ``twisted.web.iweb.IRequest`` that the resource tree uses: the router,
the gate, the ``/ws`` entry and Autobahn's ``WebSocketResource`` (method, uri, path, args,
headers, content, ``setResponseCode``/``setHeader``/``write``/``finish``, ``notifyFinish``,
``channel``/``transport`` and the client address). Headers are kept as the parser gave them and
the response head is written in one piece with the first body bytes, which is where
``twisted.web.server.Request`` spends most of its time.
"""

from __future__ import annotations

from collections.abc import Callable
from io import BytesIO
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import ISSLTransport
from twisted.python.failure import Failure
from twisted.web.http import RESPONSES, parse_qs, unquote
from twisted.web.http_headers import Headers
from zope.interface import implementer

from bullmq_proxy.http.gone import IGoneNotice
from bullmq_proxy.sockets import write_now

if TYPE_CHECKING:
    from bullmq_proxy.http.channel import LeanChannel

# Statuses whose responses never carry a body (RFC 9110, 6.4.1).
NO_BODY_CODES = frozenset({204, 304})


@implementer(IGoneNotice)
class LeanRequest:
    """One request read by ``LeanChannel``; answered through the same calls as Twisted's."""

    code = 200
    code_message: bytes | None = None
    finished = False
    startedWriting = False
    _chunked = False
    _requestHeaders: Headers | None = None

    def __init__(
        self,
        channel: LeanChannel,
        method: bytes,
        uri: bytes,
        version: bytes,
        headers: dict[bytes, bytes],
        raw_headers: list[tuple[bytes, bytes]],
        content: bytes,
        keep_alive: bool,
    ) -> None:
        self.channel: LeanChannel | None = channel
        self.transport = channel.transport
        self.method = method
        self.uri = uri
        self.clientproto = version
        self.keep_alive = keep_alive
        self._headers = headers
        self._raw_headers = raw_headers
        self.content = BytesIO(content)
        path, _, query = uri.partition(b"?")
        self.path = path
        self.args: dict[bytes, list[bytes]] = parse_qs(query, 1) if query else {}
        self.prepath: list[bytes] = []
        self.postpath = path[1:].split(b"/")
        if b"%" in path:
            self.postpath = [unquote(part) for part in self.postpath]
        self._response_headers: dict[bytes, tuple[bytes, bytes]] = {}
        self._waiting: list[Deferred[None]] = []
        self._gone: list[Callable[[Failure], object]] = []

    # --- what was asked -------------------------------------------------------------------

    def getHeader(self, name: str | bytes) -> Any:
        """The last value of a request header; text for a text name, as Twisted does, but a
        value that is not UTF-8 reads with replacement characters instead of raising."""
        if isinstance(name, str):
            value = self._headers.get(name.lower().encode("ascii", "replace"))
            return None if value is None else value.decode("utf-8", "replace")
        return self._headers.get(name.lower())

    def getAllHeaders(self) -> dict[bytes, bytes]:
        return dict(self._headers)

    @property
    def requestHeaders(self) -> Headers:
        """Built on first use: only the WebSocket upgrade reads every header this way."""
        if self._requestHeaders is None:
            headers = Headers()
            for name, value in self._raw_headers:
                headers.addRawHeader(name, value)
            self._requestHeaders = headers
        return self._requestHeaders

    def getClientAddress(self) -> Any:
        return self.transport.getPeer()

    def getHost(self) -> Any:
        return self.transport.getHost()

    def isSecure(self) -> bool:
        return ISSLTransport.providedBy(self.transport)

    # --- the answer -----------------------------------------------------------------------

    def setResponseCode(self, code: int, message: bytes | None = None) -> None:
        if not isinstance(code, int):
            raise TypeError("HTTP response code must be int or long")
        self.code = code
        self.code_message = message

    def setHeader(self, name: str | bytes, value: str | bytes) -> None:
        raw = name.encode("ascii") if isinstance(name, str) else name
        value = value.encode("utf-8") if isinstance(value, str) else value
        if b"\n" in value or b"\r" in value:  # a header value can never end its line
            value = value.replace(b"\r", b" ").replace(b"\n", b" ")
        self._response_headers[raw.lower()] = (raw, value)

    def getResponseHeader(self, name: bytes) -> bytes | None:
        entry = self._response_headers.get(name.lower())
        return None if entry is None else entry[1]

    def write(self, data: bytes) -> None:
        if self.finished:
            raise RuntimeError("Request.write called on a request after Request.finish "
                               "was called.")
        channel = self.channel
        if channel is None or channel.transport is None:
            return  # the client left, or the connection became a WebSocket
        if not self.startedWriting:
            self.startedWriting = True
            write_now(channel.transport, self._head() + self._framed(data))
        elif data:
            write_now(channel.transport, self._framed(data))

    def finish(self) -> None:
        if self.finished:
            return
        if self.channel is None:
            raise RuntimeError("Request.finish called on a request after its connection was "
                               "lost; use Request.notifyFinish to keep track of this.")
        if not self.startedWriting:
            if self._has_body() and b"content-length" not in self._response_headers:
                self._response_headers[b"content-length"] = (b"content-length", b"0")
            self.write(b"")
        elif self._chunked and self.channel.transport is not None:
            write_now(self.channel.transport, b"0\r\n\r\n")
        self.finished = True
        self._gone = []
        self._notify(None)
        self.channel.request_done(self)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """A streaming answer (Server-Sent Events) is paused while the client reads slower
        than it is written to, as on Twisted's request: the transport does the pausing."""
        if self.channel is not None and self.channel.transport is not None:
            self.channel.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        if self.channel is not None and self.channel.transport is not None:
            self.channel.transport.unregisterProducer()

    def notifyFinish(self) -> Deferred[None]:
        if self.finished:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._waiting.append(waiter)
        return waiter

    def on_gone(self, callback: Callable[[Failure], object]) -> None:
        if not self.finished:
            self._gone.append(callback)

    def connection_lost(self, reason: Failure) -> None:
        """The client went away before the answer was finished."""
        self.channel = None
        gone, self._gone = self._gone, []
        for callback in gone:
            callback(reason if isinstance(reason, Failure) else Failure(reason))
        self._notify(reason)

    def _notify(self, outcome: Failure | None) -> None:
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            if outcome is None:
                waiter.callback(None)
            else:
                waiter.errback(outcome)

    def _has_body(self) -> bool:
        return self.code not in NO_BODY_CODES and self.code >= 200 and self.method != b"HEAD"

    def _head(self) -> bytes:
        headers = self._response_headers
        if self._has_body() and b"content-length" not in headers:
            if self.clientproto == b"HTTP/1.1":
                self._chunked = True
                headers[b"transfer-encoding"] = (b"Transfer-Encoding", b"chunked")
            else:
                self.keep_alive = False  # the end of the body is the end of the connection
        connection = headers.get(b"connection")
        if connection is not None and connection[1].lower() == b"close":
            self.keep_alive = False
        elif not self.keep_alive:
            headers[b"connection"] = (b"Connection", b"close")
        message = self.code_message or RESPONSES.get(self.code, b"Unknown Status")
        assert self.channel is not None
        lines = [b"HTTP/1.1 %d %s\r\nDate: %s\r\n" % (self.code, message, self.channel.date())]
        for name, value in headers.values():
            lines.append(name + b": " + value + b"\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)

    def _framed(self, data: bytes) -> bytes:
        if not data or not self._has_body():
            return b""
        if self._chunked:
            return b"%x\r\n%s\r\n" % (len(data), data)
        return data
