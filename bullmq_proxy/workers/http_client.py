"""The HTTP client of the endpoint calls: treq on ``EndpointAgent``, an ``IAgent`` of the
proxy's own with kept-alive connections and httptools' (llhttp's) response parser.

treq stays the API (cookies off, redirects, gzip, timeouts through Deferreds); under it,
Twisted's ``Agent`` and ``HTTP11ClientProtocol`` spent about 0.25 ms of CPU on each call here,
most of a job's cost (benchmarks/README.md). ``EndpointAgent`` writes the request line,
headers and body in one ``transport.write`` (an endpoint that answers before it has read the
body, as nginx's ``return 200`` does, then never finds the connection mid-request), parses the
answer in C, and keeps an idle connection per worker slot for each scheme, host and port.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from http.cookiejar import CookieJar
from typing import Any

import httptools
from hyperlink import EncodedURL
from treq.client import HTTPClient
from twisted.internet.defer import CancelledError, Deferred, DeferredList, fail, succeed
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IConsumer, IPushProducer, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from twisted.web.client import (
    URI,
    BrowserLikePolicyForHTTPS,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.error import SchemeNotSupported
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import (
    UNKNOWN_LENGTH,
    IAgent,
    IAgentEndpointFactory,
    IBodyProducer,
    IResponse,
)
from zope.interface import implementer

from bullmq_proxy.sockets import write_now
from bullmq_proxy.workers.checked_headers import CheckedHeaders

# Endpoint hosts are few; past this many the caches start again rather than grow.
MAX_CACHED_ENDPOINTS = 256
# An idle kept connection is closed after this long, as Twisted's pool does.
IDLE_CONNECTION_TIMEOUT = 240.0
DEFAULT_IDLE_PER_HOST = 2
# Methods a request may be sent again for when a kept connection turns out closed.
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})

Key = tuple[bytes, bytes, int]
# How every complete body ends, as Twisted's client says it. One instance for all, since
# body protocols only check it: building one per answer was 1 % of a processed job's CPU.
BODY_RECEIVED = Failure(ResponseDone("Response body fully received"))
# Why the endpoint policy refuses (host, port, resolved addresses), or None.
Refusal = Callable[[str, int, Sequence[str]], str | None]


class NoCookies(CookieJar):
    """A jar that never holds a cookie. Deliveries carry no state from one another: a cookie
    one endpoint sets must not ride along with later jobs, nor reach the endpoints of other
    queues on the same host. (The standard jar with a policy refusing every domain still
    walked each request and answer: 5 % of treq's cost per call.)"""

    def add_cookie_header(self, request: Any) -> None:
        return None

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None

    def set_cookie(self, cookie: Any) -> None:
        return None

    def __iter__(self) -> Iterator[Any]:
        # treq merges the call's jar into the client's on every call, by iterating it.
        return iter(())


# Also given as each call's ``cookies``: treq builds a new jar for every call without one.
NO_COOKIES = NoCookies()


class EndpointURL(EncodedURL):
    """An endpoint's URL, encoded as a URI once, when its worker starts. treq encodes the URL
    it is given on every call, and IDNA-checking each label of the host was 40 % of treq's
    cost per call. IDNA is also wrong for ASCII hosts: it refuses an underscore (a
    Compose service name such as ``my_service``) and an IPv6 literal, which HTTP allows."""

    _text: str

    @classmethod
    def of(cls, text: str) -> EndpointURL:
        parsed = EncodedURL.from_text(text)
        if parsed.host.isascii():
            # Only the path, query and fragment need encoding.
            uri = parsed.replace(host="").to_uri().replace(host=parsed.host)
        else:
            uri = parsed.to_uri()
        url = cls(scheme=uri.scheme, host=uri.host, path=uri.path, query=uri.query,
                  fragment=uri.fragment, port=uri.port, rooted=uri.rooted,
                  userinfo=uri.userinfo, uses_netloc=uri.uses_netloc)
        url._text = EncodedURL.to_text(url)
        return url

    def to_uri(self) -> EndpointURL:
        return self

    def to_text(self, with_password: bool = False) -> str:
        return EncodedURL.to_text(self, True) if with_password else self._text

    def replace(self, *args: Any, **kwargs: Any) -> EncodedURL:
        # A changed URL is a plain one again, encoded on use like any other.
        return EncodedURL.from_text(self._text).replace(*args, **kwargs)


def endpoint_client(reactor: Any, refusal: Refusal | None = None
                    ) -> tuple[HTTPClient, EndpointAgent]:
    agent = EndpointAgent(reactor, refusal=refusal)
    return HTTPClient(agent, cookiejar=NO_COOKIES, data_to_body_producer=ImmediateBody), agent


@implementer(IAgentEndpointFactory)
class ReusedEndpoints:
    """One client endpoint per scheme, host and port: an endpoint resolves its host on every
    connect, so keeping it changes nothing else."""

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._tls = BrowserLikePolicyForHTTPS()
        self._endpoints: dict[Key, IStreamClientEndpoint] = {}

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        key = (uri.scheme, uri.host, uri.port)
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            if len(self._endpoints) >= MAX_CACHED_ENDPOINTS:
                self._endpoints.clear()
            endpoint = self._endpoints[key] = self._build(uri)
        return endpoint

    def _build(self, uri: URI) -> IStreamClientEndpoint:
        endpoint = HostnameEndpoint(self._reactor, uri.host.decode("ascii"), uri.port)
        if uri.scheme == b"http":
            return endpoint
        if uri.scheme == b"https":
            return wrapClientTLS(self._tls.creatorForNetloc(uri.host, uri.port), endpoint)
        raise SchemeNotSupported(f"unsupported scheme: {uri.scheme!r}")


@implementer(IBodyProducer)
class ImmediateBody:
    """A body given whole; ``EndpointAgent`` sends it with the headers."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.length = len(body)

    def startProducing(self, consumer: Any) -> Deferred[None]:
        consumer.write(self.body)
        return succeed(None)

    # Nothing is left to produce once startProducing has returned.
    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


@implementer(IConsumer)
class _Buffer:
    """Takes a body from any other producer whole, before the request is sent."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        pass

    def unregisterProducer(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.chunks.append(data)


class _Target:
    """What a URL means to the agent, parsed once per URL."""

    def __init__(self, uri: bytes) -> None:
        parsed = URI.fromBytes(uri)
        self.uri = parsed
        self.key: Key = (parsed.scheme, parsed.host, parsed.port)
        default_port = 443 if parsed.scheme == b"https" else 80
        # An IPv6 literal is bracketed in the Host header, as in the URL.
        host = b"[%s]" % parsed.host if b":" in parsed.host else parsed.host
        self.host = host if parsed.port == default_port else b"%s:%d" % (host, parsed.port)
        self.path = parsed.originForm


class _RequestInfo:
    """``IClientRequest``: what treq's redirect and cookie layers read of the request."""

    def __init__(self, method: bytes, absoluteURI: bytes, headers: Headers) -> None:
        self.method = method
        self.absoluteURI = absoluteURI
        self.headers = headers


@implementer(IPushProducer)
class _BodyTransport:
    """The transport a body protocol sees (``deliverBody``): flow control, or giving up."""

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection

    def pauseProducing(self) -> None:
        if self._connection.transport is not None:
            self._connection.transport.pauseProducing()

    def resumeProducing(self) -> None:
        if self._connection.transport is not None:
            self._connection.transport.resumeProducing()

    def stopProducing(self) -> None:
        self._connection.abort()

    loseConnection = stopProducing


@implementer(IResponse)
class _Response:
    """An answer whose body may still be arriving; chunks wait until ``deliverBody``."""

    previousResponse: IResponse | None = None

    def __init__(self, code: int, phrase: bytes, headers: Headers, length: Any,
                 request: _RequestInfo, transport: _BodyTransport) -> None:
        self.version = (b"HTTP", 1, 1)
        self.code = code
        self.phrase = phrase
        self.headers = headers
        self.length = length
        self.request = request
        self._transport = transport
        self._protocol: Any = None
        self._chunks: list[bytes] = []
        self._end: Failure | None = None

    def setPreviousResponse(self, response: IResponse) -> None:
        self.previousResponse = response

    def deliverBody(self, protocol: Any) -> None:
        self._protocol = protocol
        protocol.makeConnection(self._transport)
        chunks, self._chunks = self._chunks, []
        for chunk in chunks:
            protocol.dataReceived(chunk)
        if self._end is not None:
            protocol.connectionLost(self._end)

    def body(self, chunk: bytes) -> None:
        if self._protocol is None:
            self._chunks.append(chunk)
        else:
            self._protocol.dataReceived(chunk)

    def end(self, reason: Failure) -> None:
        if self._end is not None:
            return
        self._end = reason
        if self._protocol is not None:
            self._protocol.connectionLost(reason)


class _Connection(Protocol):
    """One kept connection to an endpoint: one request at a time, parsed with httptools."""

    _waiting: Deferred[IResponse] | None = None
    _response: _Response | None = None
    _request: _RequestInfo | None = None
    _answered = False  # response headers are in: fire the waiting Deferred after the feed
    _complete = False  # the whole answer is in: keep or close the connection after the feed
    _keep = False
    _interim = False  # a 1xx answer, skipped
    _gone = False
    idle_since = 0.0

    def __init__(self, agent: EndpointAgent, key: Key) -> None:
        self._agent = agent
        self.key = key
        self._parser = httptools.HttpResponseParser(self)
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._phrase = b""
        self.reused = False
        self.lost: Deferred[None] = Deferred()

    def send(self, data: bytes, request: _RequestInfo, waiting: Deferred[IResponse]) -> None:
        self._request = request
        self._waiting = waiting
        write_now(self.transport, data)

    def abort(self) -> None:
        self._keep = False
        if self.transport is not None and not self._gone:
            self.transport.abortConnection()

    # --- httptools callbacks --------------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        self._phrase += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        code = parser.get_status_code()
        raw, self._raw_headers = self._raw_headers, []
        phrase, self._phrase = self._phrase, b""
        if 100 <= code < 200:
            self._interim = True
            return
        headers = CheckedHeaders.of_pairs(raw)
        lengths = headers.getRawHeaders(b"Content-Length")
        length: Any = UNKNOWN_LENGTH if lengths is None else int(lengths[-1])
        assert self._request is not None
        self._keep = parser.should_keep_alive()
        self._response = _Response(code, phrase, headers, length, self._request,
                                   _BodyTransport(self))
        self._answered = True
        if self._request.method == b"HEAD":
            raise _HeadAnswered()

    def on_body(self, body: bytes) -> None:
        if self._response is not None:
            self._response.body(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self._response is not None:
            self._response.end(BODY_RECEIVED)
        self._complete = True

    # --- Protocol -------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as err:
            if not isinstance(err.__context__, _HeadAnswered):
                raise
            self._parser = httptools.HttpResponseParser(self)
            self._response.end(BODY_RECEIVED)
            self._complete = True
        except httptools.HttpParserError as err:
            self._keep = False
            self._fail(Failure(err))
            self.abort()
            return
        waiting, response = None, self._response
        if self._answered:
            self._answered = False
            waiting, self._waiting = self._waiting, None
        if self._complete:
            # Kept before the caller hears of the answer, so that a request it makes at
            # once can take this connection.
            self._complete = False
            self._response = self._request = None
            if self._keep:
                self._agent.release(self)
            else:
                self.transport.loseConnection()
        if waiting is not None:
            waiting.callback(response)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._gone = True
        self._agent.forget(self)
        self._fail(reason)
        self.lost.callback(None)

    def _fail(self, reason: Failure) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.errback(Failure(ResponseNeverReceived([reason])))
            return
        response, self._response = self._response, None
        if response is None:
            return
        if response.length is UNKNOWN_LENGTH and reason.check(ConnectionDone) \
                and not response.headers.hasHeader(b"transfer-encoding"):
            # An answer whose end is the end of the connection, as HTTP/1.0 allows.
            response.end(Failure(PotentialDataLoss()))
        else:
            response.end(Failure(ResponseFailed([reason])))


class _HeadAnswered(Exception):
    """An answer to HEAD has no body, whatever its Content-Length says: stop parsing."""


class _ConnectionFactory(Factory):
    noisy = False

    def __init__(self, agent: EndpointAgent, key: Key) -> None:
        self._agent = agent
        self._key = key

    def buildProtocol(self, addr: Any) -> _Connection:
        return _Connection(self._agent, self._key)


@implementer(IAgent)
class EndpointAgent:
    """``IAgent`` with kept-alive connections; also what the workers' service sizes and
    closes (``maxPersistentPerHost``, ``closeCachedConnections``), as on Twisted's pool."""

    def __init__(self, reactor: Any, max_idle_per_host: int = DEFAULT_IDLE_PER_HOST,
                 endpoints: IAgentEndpointFactory | None = None,
                 refusal: Refusal | None = None) -> None:
        self._reactor = reactor
        self._refusal = refusal
        self.maxPersistentPerHost = max_idle_per_host
        self._endpoints = endpoints or ReusedEndpoints(reactor)
        self._targets: dict[bytes, _Target] = {}
        self._factories: dict[Key, _ConnectionFactory] = {}
        self._idle: dict[Key, list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._sweeping: LoopingCall | None = None

    def request(self, method: bytes, uri: bytes, headers: Headers | None = None,
                bodyProducer: IBodyProducer | None = None) -> Deferred[IResponse]:
        try:
            target = self._target(uri)
            endpoint = self._endpoints.endpointForURI(target.uri)
        except Exception:
            return fail()
        headers = headers if headers is not None else Headers()
        if bodyProducer is None or isinstance(bodyProducer, ImmediateBody):
            body = None if bodyProducer is None else bodyProducer.body
            return self._send(method, uri, target, endpoint, headers, body)
        buffer = _Buffer()
        produced = bodyProducer.startProducing(buffer)
        return produced.addCallback(lambda _: self._send(
            method, uri, target, endpoint, headers, b"".join(buffer.chunks)))

    def _target(self, uri: bytes) -> _Target:
        target = self._targets.get(uri)
        if target is None:
            if len(self._targets) >= MAX_CACHED_ENDPOINTS:
                self._targets.clear()
            target = self._targets[uri] = _Target(uri)
        return target

    def _send(self, method: bytes, uri: bytes, target: _Target,
              endpoint: IStreamClientEndpoint, headers: Headers,
              body: bytes | None) -> Deferred[IResponse]:
        lines = [method, b" ", target.path, b" HTTP/1.1\r\nHost: ", target.host, b"\r\n"]
        for name, values in headers.getAllRawHeaders():
            for value in values:
                lines += (name, b": ", value, b"\r\n")
        if body is not None:
            lines += (b"Content-Length: %d\r\n\r\n" % len(body), body)
        else:
            lines.append(b"\r\n")
        data = b"".join(lines)
        info = _RequestInfo(method, uri, headers)
        return self._attempt(target.key, endpoint, data, info,
                             retry=method in IDEMPOTENT)

    def _attempt(self, key: Key, endpoint: IStreamClientEndpoint, data: bytes,
                 info: _RequestInfo, retry: bool) -> Deferred[IResponse]:
        connection: _Connection | None = None
        connecting: Deferred[Any] | None = None
        cancelled = False

        def cancel(waiting: Deferred[IResponse]) -> None:
            nonlocal cancelled
            cancelled = True
            if connecting is not None:
                connecting.cancel()
            if connection is not None:
                connection.abort()

        waiting: Deferred[IResponse] = Deferred(cancel)
        idle = self._idle.get(key)
        if idle:
            connection = idle.pop()
            connection.reused = True
            if retry:
                # A kept connection the endpoint closed meanwhile: once more, on a new one.
                waiting.addErrback(self._again, key, endpoint, data, info, connection)
            connection.send(data, info, waiting)
            return waiting

        def connected(protocol: _Connection) -> None:
            nonlocal connection
            connection = protocol
            self._opened(protocol)
            refused = self._refused(key, protocol)
            if refused is not None:
                # The host name now resolves to an address the policy refuses (DNS
                # rebinding): nothing is sent to it.
                protocol.abort()
                waiting.errback(Failure(ResponseNeverReceived([Failure(
                    ConnectionRefusedError(refused))])))
                return
            protocol.send(data, info, waiting)

        def failed(failure: Failure) -> None:
            if not waiting.called:
                waiting.errback(Failure(CancelledError()) if cancelled
                                else Failure(ResponseNeverReceived([failure])))

        connecting = endpoint.connect(self._factory(key))
        connecting.addCallbacks(connected, failed)
        return waiting

    def _refused(self, key: Key, protocol: _Connection) -> str | None:
        """Why the endpoint policy refuses the address this connection reached, if it does."""
        if self._refusal is None or protocol.transport is None:
            return None
        peer = protocol.transport.getPeer()
        host = getattr(peer, "host", None)
        if host is None:
            return None
        return self._refusal(key[1].decode("ascii", "replace"), key[2], [host])

    def _again(self, failure: Failure, key: Key, endpoint: IStreamClientEndpoint, data: bytes,
               info: _RequestInfo, connection: _Connection) -> Any:
        if not failure.check(ResponseNeverReceived) or not connection.reused:
            return failure
        return self._attempt(key, endpoint, data, info, retry=False)

    def _factory(self, key: Key) -> _ConnectionFactory:
        factory = self._factories.get(key)
        if factory is None:
            if len(self._factories) >= MAX_CACHED_ENDPOINTS:
                self._factories.clear()
            factory = self._factories[key] = _ConnectionFactory(self, key)
        return factory

    # --- the pool -------------------------------------------------------------------------

    def _opened(self, connection: _Connection) -> None:
        self._open.add(connection)
        if self._sweeping is None:
            self._sweeping = LoopingCall(self._close_idle)
            self._sweeping.clock = self._reactor
            self._sweeping.start(IDLE_CONNECTION_TIMEOUT / 4, now=False)

    def release(self, connection: _Connection) -> None:
        """The answer is in: keep the connection for the next request, or close it."""
        idle = self._idle.setdefault(connection.key, [])
        if len(idle) >= self.maxPersistentPerHost:
            connection.transport.loseConnection()
            return
        connection.idle_since = self._reactor.seconds()
        idle.append(connection)

    def forget(self, connection: _Connection) -> None:
        """The connection is closed (by either side)."""
        idle = self._idle.get(connection.key)
        if idle and connection in idle:
            idle.remove(connection)
        self._open.discard(connection)
        if not self._open and self._sweeping is not None:
            self._sweeping.stop()
            self._sweeping = None

    def _close_idle(self) -> None:
        oldest = self._reactor.seconds() - IDLE_CONNECTION_TIMEOUT
        for idle in self._idle.values():
            for connection in [c for c in idle if c.idle_since < oldest]:
                connection.transport.loseConnection()

    def closeCachedConnections(self) -> Deferred[Any]:
        """Close the idle connections; fires when they are closed."""
        closing = [connection for idle in self._idle.values() for connection in idle]
        self._idle.clear()
        for connection in closing:
            connection.transport.loseConnection()
        return DeferredList([connection.lost for connection in closing])

