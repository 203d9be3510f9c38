"""The lean HTTP/1.1 server channel: a Twisted ``Protocol`` that parses with httptools (llhttp)
and hands ``LeanRequest`` objects to the same resource tree ``twisted.web.server.Site`` serves.

What it keeps of HTTP/1.1: keep-alive, pipelining (answers in order; reading pauses while a
request waits behind another), chunked bodies, ``Expect: 100-continue``, TLS (the transport is
whatever the endpoint gives), and the WebSocket upgrade (Autobahn takes the transport over).
What it refuses, each with a JSON problem and then closing the connection: input llhttp does not
accept in its strict mode (a request with both ``Content-Length`` and ``Transfer-Encoding``,
obsolete line folding, bad characters), headers over ``MAX_HEADER_BYTES`` or ``MAX_HEADERS``
(431), a declared or received body over the limit (413, before any of it is buffered and before
``100 Continue``), and headers or a body that stall past their deadlines (408).
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from io import BytesIO
from typing import Any

import httptools
import orjson
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import IResource, getChildForRequest
from twisted.web.server import NOT_DONE_YET

from bullmq_proxy.errors import (
    HEADERS_TOO_LARGE,
    INTERNAL,
    INVALID_HTTP,
    PAYLOAD_TOO_LARGE,
    REQUEST_TIMEOUT,
    ErrorKind,
    ProxyError,
)
from bullmq_proxy.http.request import LeanRequest
from bullmq_proxy.http.router import RequestObserver
from bullmq_proxy.sockets import write_now
from bullmq_proxy.web import write_problem

log = Logger(namespace="bullmq_proxy.http")

MAX_HEADER_BYTES = 16 * 1024
"""Request line and headers together, as nginx's and Node's defaults allow."""
MAX_HEADERS = 100

# Where the parser is in the next request; each has its own deadline (LeanSite's timeouts),
# which does not run while a request is being answered.
WAITING, HEADERS, BODY = range(3)


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing; carries the answer."""

    def __init__(self, error: ProxyError) -> None:
        super().__init__(error.detail)
        self.error = error


def _refusal(kind: ErrorKind, detail: str) -> _Refused:
    return _Refused(ProxyError(kind, detail))


class LeanChannel(Protocol):
    """One client connection."""

    _phase = WAITING
    _deadline: float | None = None
    _closing = False  # an error answer is written or waiting its turn; read no more
    _ended = False  # the connection is closing: answer nothing more
    _paused = False
    _upgrade = False  # llhttp stops after an Upgrade request: nothing more is parsed
    _continue = False  # a client waits for 100 Continue before it sends the body
    # Bytes fed while a header line is incomplete: llhttp holds that line until its end.
    _unparsed = 0

    def __init__(self, site: LeanSite) -> None:
        self.site = site
        self._parser = httptools.HttpRequestParser(self)
        self._clock = site.reactor.seconds
        self._queue: deque[LeanRequest | ProxyError] = deque()
        self._current: LeanRequest | None = None
        self._dispatching = False
        self._new_message()

    def _new_message(self) -> None:
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._received = 0
        self._header_budget = MAX_HEADER_BYTES

    # --- Protocol -------------------------------------------------------------------------

    def connectionMade(self) -> None:
        self._deadline = self._clock() + self.site.headers_timeout
        self.site.deadlines.add(self)

    def dataReceived(self, data: bytes) -> None:
        if self._closing or self._upgrade:
            return
        if self._phase == HEADERS:
            self._unparsed += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._upgrade = True
            self._after_upgrade(data[upgrade.args[0]:])
        except httptools.HttpParserCallbackError as err:
            refused = err.__context__
            if not isinstance(refused, _Refused):
                raise
            self._refuse(refused.error)
        except httptools.HttpParserError as err:
            detail = str(err.args[0]) if err.args else "unreadable"
            self._refuse(ProxyError(INVALID_HTTP, f"The request is not valid HTTP/1.1: "
                                                  f"{detail}."))
        else:
            if self._phase == HEADERS and self._header_budget < self._unparsed:
                # A header line still incomplete; llhttp keeps it until its end of line.
                self._refuse(ProxyError(HEADERS_TOO_LARGE, self._headers_detail()))
        if self._current is None and self._queue:
            self._dispatch()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.site.deadlines.discard(self)
        current, self._current = self._current, None
        self._queue.clear()
        if current is not None and not current.finished:
            current.connection_lost(reason)

    # --- httptools callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._phase = HEADERS
        self._header_budget = MAX_HEADER_BYTES
        self._unparsed = 0
        if self._current is None:
            self._deadline = self._clock() + self.site.headers_timeout

    def on_url(self, url: bytes) -> None:
        self._header_budget -= len(url)
        self._unparsed = 0
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        # Trailers of a chunked body come here too, and count against the same budget.
        self._header_budget -= len(name) + len(value) + 4
        self._unparsed = 0
        if self._header_budget < 0 or len(self._raw_headers) >= MAX_HEADERS:
            raise _refusal(HEADERS_TOO_LARGE, self._headers_detail())
        if self._phase != HEADERS:
            return
        self._raw_headers.append((name, value))
        self._headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        self._phase = BODY
        self._header_budget = MAX_HEADER_BYTES
        if self._current is None:
            self._deadline = self._clock() + self.site.idle_timeout
        declared = self._headers.get(b"content-length")
        # llhttp has already refused a malformed or duplicated Content-Length.
        if declared is not None and int(declared) > self.site.max_body_size:
            raise _refusal(PAYLOAD_TOO_LARGE, self._too_large_detail())
        expect = self._headers.get(b"expect")
        if expect is not None and expect.lower() == b"100-continue" and declared != b"0" \
                and self._parser.get_http_version() == "1.1":
            self._continue = True
            if self._current is None and not self._queue:
                self._send_continue()
        else:
            self._continue = False

    def on_body(self, body: bytes) -> None:
        self._received += len(body)
        if self._received > self.site.max_body_size:
            raise _refusal(PAYLOAD_TOO_LARGE, self._too_large_detail())
        self._body.append(body)
        if self._current is None:
            self._deadline = self._clock() + self.site.idle_timeout

    def on_message_complete(self) -> None:
        parser = self._parser
        request = LeanRequest(
            self, parser.get_method(), self._url, b"HTTP/" + parser.get_http_version().encode(),
            self._headers, self._raw_headers,
            self._body[0] if len(self._body) == 1 else b"".join(self._body),
            parser.should_keep_alive(),
        )
        self._new_message()
        self._phase = WAITING
        if self._current is not None or self._queue:
            # A pipelined request: read no more until the ones before it are answered.
            self._pause()
        self._queue.append(request)

    # --- answering ------------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Start the requests waiting their turn, one at a time, in order."""
        if self._dispatching:
            return
        self._dispatching = True
        try:
            while self._current is None and self._queue and not self._ended:
                item = self._queue.popleft()
                if isinstance(item, ProxyError):
                    self._write_refusal(item)
                    return
                self._current = item
                self._deadline = None
                self._render(item)
        finally:
            self._dispatching = False

    def _render(self, request: LeanRequest) -> None:
        try:
            resource = getChildForRequest(self.site.resource, request)
            body = resource.render(request)
        except Exception:
            body = self._crashed(Failure(), request)
        if body is NOT_DONE_YET:
            return
        if isinstance(body, bytes):
            if not request.startedWriting:
                request.setHeader(b"content-length", b"%d" % len(body))
            request.write(body)
        else:
            log.error("{resource} rendered {type}, not bytes", resource=resource,
                      type=type(body).__name__)
            self._crashed(None, request)
            return
        request.finish()

    def _crashed(self, failure: Failure | None, request: LeanRequest) -> Any:
        incident = uuid.uuid4().hex
        if failure is not None:
            log.failure("Unexpected error {incident} on {path}", failure, incident=incident,
                        path=request.path.decode("utf-8", "replace"))
        if not request.startedWriting:
            error = ProxyError(INTERNAL, f"An unexpected error occurred (incident {incident}).")
            write_problem(request, error, f"urn:uuid:{incident}")
        elif not request.finished:
            self.transport.abortConnection()  # a response half written cannot be mended
        return NOT_DONE_YET

    def request_done(self, request: LeanRequest) -> None:
        """``request.finish()`` was called: close, or go on with the next request."""
        if request is not self._current:
            return
        self._current = None
        if self.transport is None:
            return  # the connection is a WebSocket now
        if not request.keep_alive or self._upgrade:
            self._end()
            return
        self._deadline = self._clock() + (
            self.site.headers_timeout if self._phase == HEADERS else self.site.idle_timeout)
        if self._queue:
            self._dispatch()
        if self._current is None and self._phase == BODY and self._continue:
            self._send_continue()
        if self._paused and not self._queue:
            self._paused = False
            self.transport.resumeProducing()

    def _send_continue(self) -> None:
        self._continue = False
        write_now(self.transport, b"HTTP/1.1 100 Continue\r\n\r\n")

    def _pause(self) -> None:
        if not self._paused:
            self._paused = True
            self.transport.pauseProducing()

    def _after_upgrade(self, rest: bytes) -> None:
        """The request before ``rest`` asked for an Upgrade. Frames a client sends before it
        has seen the 101 go to the WebSocket protocol after the handshake (Autobahn feeds it
        the request's content); anything else ends the connection after the answer."""
        if self._queue and rest:
            request = self._queue[-1]
            if isinstance(request, LeanRequest) and not request.content.getvalue():
                request.content = BytesIO(rest)

    # --- refusing -------------------------------------------------------------------------

    def _refuse(self, error: ProxyError) -> None:
        """Answer ``error`` once the requests before it are answered, then close."""
        self._closing = True
        self._deadline = None
        if self._current is None and not self._queue:
            self._write_refusal(error)
        else:
            self._queue.append(error)

    def _write_refusal(self, error: ProxyError) -> None:
        self._closing = True
        log.info("Refused a request from {peer}: {detail}", peer=self._peer(),
                 detail=error.detail)
        path = self._url.split(b"?", 1)[0].decode("utf-8", "replace") or "/"
        body = orjson.dumps(error.problem(path))
        status = error.kind.status
        if self.site.observe is not None:
            self.site.observe(None, self._method(), status, 0.0)
        write_now(
            self.transport,
            b"HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: application/problem+json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (status, error.kind.title.encode(), self.date(), len(body), body)
        )
        self._end()

    def _end(self) -> None:
        self._closing = self._ended = True
        self._deadline = None
        self._queue.clear()
        self.transport.loseConnection()

    def expire(self, now: float) -> None:
        """Called by the site's sweep: end a connection whose deadline has passed."""
        if self._deadline is None or now < self._deadline or self._current is not None:
            return
        if self._phase == WAITING:
            self._end()
        elif self._phase == HEADERS:
            self._refuse(ProxyError(REQUEST_TIMEOUT, "The request headers did not arrive within "
                                    f"{self.site.headers_timeout:g} seconds."))
        else:
            self._refuse(ProxyError(REQUEST_TIMEOUT, "The request body stalled for "
                                    f"{self.site.idle_timeout:g} seconds."))

    def _headers_detail(self) -> str:
        return (f"The request line and headers must stay within {MAX_HEADER_BYTES} bytes and "
                f"{MAX_HEADERS} headers.")

    def _too_large_detail(self) -> str:
        return f"The body is larger than {self.site.max_body_size} bytes."

    def _method(self) -> bytes:
        """The refused request's method, when llhttp got as far as reading it."""
        try:
            return self._parser.get_method() if self._url else b""
        except httptools.HttpParserError:
            return b""

    def _peer(self) -> str:
        peer = self.transport.getPeer()
        return str(getattr(peer, "host", peer))

    def date(self) -> bytes:
        return self.site.date()


class Deadlines:
    """One sweep a second over the open connections instead of a timer per request: a
    request costs only the time it was read at."""

    def __init__(self, reactor: IReactorTime, interval: float) -> None:
        self._reactor = reactor
        self._interval = interval
        self._channels: set[LeanChannel] = set()
        self._sweeping: LoopingCall | None = None

    def add(self, channel: LeanChannel) -> None:
        self._channels.add(channel)
        if self._sweeping is None:
            self._sweeping = LoopingCall(self._sweep)
            self._sweeping.clock = self._reactor
            self._sweeping.start(self._interval, now=False)

    def discard(self, channel: LeanChannel) -> None:
        self._channels.discard(channel)
        if not self._channels and self._sweeping is not None:
            self._sweeping.stop()
            self._sweeping = None

    def _sweep(self) -> None:
        now = self._reactor.seconds()
        for channel in list(self._channels):
            if channel.transport is None:  # taken over by a WebSocket
                self.discard(channel)
            else:
                channel.expire(now)


class LeanSite(Factory):
    """Serves ``resource`` (the same tree as ``ProxySite``) over ``LeanChannel``."""

    noisy = False

    def __init__(
        self,
        resource: IResource,
        reactor: Any,
        *,
        max_body_size: int,
        headers_timeout: float,
        idle_timeout: float,
        observe: RequestObserver | None = None,
    ) -> None:
        self.resource = resource
        self.observe = observe  # told of requests refused here, as the router tells of others
        self.reactor = reactor
        self.max_body_size = max_body_size
        self.headers_timeout = headers_timeout
        self.idle_timeout = idle_timeout
        self.deadlines = Deadlines(reactor, min(1.0, headers_timeout / 4, idle_timeout / 4))
        self._date_second = -1
        self._date = b""

    def buildProtocol(self, addr: Any) -> LeanChannel:
        return LeanChannel(self)

    def date(self) -> bytes:
        """The ``Date`` header value, formatted once a second."""
        now = int(self.reactor.seconds())
        if now != self._date_second:
            self._date_second = now
            self._date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now)).encode()
        return self._date
