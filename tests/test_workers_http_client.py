"""The endpoint HTTP client: connections kept (even with endpoints that answer early), one
endpoint per host, certificates checked."""

from __future__ import annotations

import pytest
import pytest_twisted
import treq
from hyperlink import EncodedURL
from twisted.internet import protocol, ssl
from twisted.internet.endpoints import HostnameEndpoint, TCP4ServerEndpoint
from twisted.web.client import URI, ResponseNeverReceived
from twisted.web.error import SchemeNotSupported
from twisted.web.resource import Resource
from twisted.web.server import Site

from bullmq_proxy.workers.http_client import (
    MAX_CACHED_ENDPOINTS,
    EndpointURL,
    ReusedEndpoints,
    _Target,
    endpoint_client,
)
from tests.certificates import make_ca, make_leaf

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Type: text/plain\r\n\r\ndone"


class EarlyAnswer(protocol.Protocol):
    """Answers as soon as the request headers are in, before the body (as nginx's
    ``return 200`` does), then reads the body away."""

    def connectionMade(self) -> None:
        self.factory.connections += 1
        self.buffer = b""
        self.body_left = 0

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.body_left:
                taken = min(self.body_left, len(self.buffer))
                self.buffer = self.buffer[taken:]
                self.body_left -= taken
                if self.body_left:
                    return
            head, found, rest = self.buffer.partition(b"\r\n\r\n")
            if not found:
                return
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            self.transport.write(ANSWER)
            self.buffer, self.body_left = rest, length


class Counting(protocol.Factory):
    protocol = EarlyAnswer
    connections = 0


@pytest_twisted.ensureDeferred
async def test_calls_reuse_one_connection_when_the_endpoint_answers_before_the_body():
    from twisted.internet import reactor

    factory = Counting()
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    http, pool = endpoint_client(reactor)
    try:
        url = f"http://127.0.0.1:{port.getHost().port}/hook"
        for n in range(20):
            response = await http.request("POST", url, data=b'{"job":%d}' % n + b" " * 200_000)
            assert await treq.content(response) == b"done"
        assert factory.connections == 1
    finally:
        await pool.closeCachedConnections()
        await port.stopListening()


def test_one_endpoint_per_scheme_host_and_port():
    from twisted.internet import reactor

    endpoints = ReusedEndpoints(reactor)
    first = endpoints.endpointForURI(URI.fromBytes(b"http://127.0.0.1:8080/a"))
    assert endpoints.endpointForURI(URI.fromBytes(b"http://127.0.0.1:8080/b?c=1")) is first
    assert endpoints.endpointForURI(URI.fromBytes(b"http://127.0.0.1:8081/a")) is not first
    secure = endpoints.endpointForURI(URI.fromBytes(b"https://127.0.0.1:8080/a"))
    assert secure is not first
    assert isinstance(first, HostnameEndpoint)
    assert not isinstance(secure, HostnameEndpoint)  # wrapped in TLS
    with pytest.raises(SchemeNotSupported):
        endpoints.endpointForURI(URI.fromBytes(b"ftp://127.0.0.1/a"))


def test_the_cache_of_endpoints_is_bounded():
    from twisted.internet import reactor

    endpoints = ReusedEndpoints(reactor)
    for port in range(MAX_CACHED_ENDPOINTS + 10):
        endpoints.endpointForURI(URI.fromBytes(b"http://127.0.0.1:%d/" % (port + 1)))
    assert len(endpoints._endpoints) <= MAX_CACHED_ENDPOINTS


def _https_site(tmp_path, reactor):
    ca = make_ca("endpoint-ca", tmp_path)
    cert, key = make_leaf("endpoint", ca, tmp_path)
    # The handshake fails before any request gets to a resource.
    resource = Resource()
    options = ssl.PrivateCertificate.loadPEM(key.read_text() + cert.read_text()).options()
    return reactor.listenSSL(0, Site(resource), options, interface="127.0.0.1")


@pytest_twisted.ensureDeferred
async def test_https_endpoints_have_their_certificate_checked(tmp_path):
    from twisted.internet import reactor

    port = _https_site(tmp_path, reactor)
    http, pool = endpoint_client(reactor)
    try:
        with pytest.raises(ResponseNeverReceived) as refused:
            await http.request("POST", f"https://127.0.0.1:{port.getHost().port}/hook",
                               data=b"{}")
        assert "certificate verify failed" in str(refused.value.reasons[0].value)
    finally:
        await pool.closeCachedConnections()
        await port.stopListening()


class SetsCookies(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.cookies: list[bytes | None] = []

    def render_POST(self, request) -> bytes:
        self.cookies.append(request.getHeader(b"cookie"))
        request.addCookie(b"session", b"secret", path=b"/")
        return b"done"


@pytest_twisted.ensureDeferred
async def test_cookies_set_by_an_endpoint_are_never_sent_back():
    from twisted.internet import reactor

    resource = SetsCookies()
    port = reactor.listenTCP(0, Site(resource), interface="127.0.0.1")
    http, pool = endpoint_client(reactor)
    try:
        for path in ("a", "b", "a"):
            response = await http.request("POST", f"http://127.0.0.1:{port.getHost().port}/{path}",
                                          data=b"{}")
            assert response.headers.getRawHeaders(b"set-cookie")
            await treq.content(response)
        assert resource.cookies == [None, None, None]
    finally:
        await pool.closeCachedConnections()
        await port.stopListening()


def test_the_jar_of_every_call_holds_nothing_whatever_is_put_in_it():
    from http.cookiejar import Cookie

    from bullmq_proxy.workers.http_client import NO_COOKIES

    cookie = Cookie(0, "session", "secret", None, False, "127.0.0.1", False, False, "/",
                    True, False, None, False, None, None, {})
    NO_COOKIES.set_cookie(cookie)
    assert list(NO_COOKIES) == []
    assert len(NO_COOKIES) == 0


class Scripted(protocol.Protocol):
    """Reads each request whole and answers with the factory's next scripted reply: bytes
    to send, or ``None`` to close the connection without answering."""

    def connectionMade(self) -> None:
        self.factory.connections += 1
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, rest = self.buffer.partition(b"\r\n\r\n")
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            if len(rest) < length:
                return
            self.buffer = rest[length:]
            self.factory.requests.append(head + b"\r\n\r\n" + rest[:length])
            reply = self.factory.replies.pop(0)
            if reply is None:
                self.transport.loseConnection()
                return
            self.transport.write(reply)
            if reply.startswith(b"HTTP/1.0"):  # its body ends with the connection
                self.transport.loseConnection()


class Script(protocol.Factory):
    protocol = Scripted

    def __init__(self, *replies: bytes | None) -> None:
        self.replies = list(replies)
        self.requests: list[bytes] = []
        self.connections = 0


async def _serve(script: Script):
    from twisted.internet import reactor

    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(script)
    http, agent = endpoint_client(reactor)
    return port, http, agent, f"http://127.0.0.1:{port.getHost().port}/hook?x=1"


async def _close(port, agent) -> None:
    await agent.closeCachedConnections()
    await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_the_request_goes_out_whole_and_every_answer_shape_is_read():
    script = Script(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n"
        b"X-Extra: yes\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end",
    )
    port, http, agent, url = await _serve(script)
    try:
        response = await http.request("POST", url, data=b'{"a":1}',
                                      headers={"X-Job": "7"})
        assert (response.code, await treq.content(response)) == (200, b"abcde")
        request = script.requests[0]
        assert request.startswith(b"POST /hook?x=1 HTTP/1.1\r\n")
        assert b"\r\nHost: 127.0.0.1:%d\r\n" % port.getHost().port in request
        assert b"\r\nX-Job: 7\r\n" in request
        assert request.endswith(b"\r\nContent-Length: 7\r\n\r\n{\"a\":1}")
        response = await http.request("POST", url, data=b"{}")
        assert response.code == 201
        assert response.headers.getRawHeaders("x-extra") == ["yes"]
        assert await treq.content(response) == b"ok"
        response = await http.request("POST", url, data=b"{}")
        assert await treq.content(response) == b"until the end"
        assert script.connections == 1
        assert sum(len(idle) for idle in agent._idle.values()) == 0  # it ended there
    finally:
        await _close(port, agent)


@pytest_twisted.ensureDeferred
async def test_a_head_answer_has_no_body_and_keeps_the_connection():
    script = Script(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
                    b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone")
    port, http, agent, url = await _serve(script)
    try:
        response = await http.request("HEAD", url)
        assert await treq.content(response) == b""
        response = await http.request("GET", url)
        assert await treq.content(response) == b"done"
        assert script.connections == 1
    finally:
        await _close(port, agent)


@pytest_twisted.ensureDeferred
async def test_a_connection_closed_before_the_answer_fails_a_post_and_retries_a_get():
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone"
    script = Script(answer, None, answer, None, answer)
    port, http, agent, url = await _serve(script)
    try:
        assert await treq.content(await http.request("POST", url, data=b"{}")) == b"done"
        with pytest.raises(ResponseNeverReceived):
            await http.request("POST", url, data=b"{}")  # never sent twice
        assert await treq.content(await http.request("POST", url, data=b"{}")) == b"done"
        # A GET on a kept connection the endpoint closed is sent once more, on a new one.
        assert await treq.content(await http.request("GET", url)) == b"done"
        assert script.connections == 3
        assert len(script.requests) == 5
    finally:
        await _close(port, agent)


@pytest_twisted.ensureDeferred
async def test_a_malformed_answer_fails_the_call():
    script = Script(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\ndone")
    port, http, agent, url = await _serve(script)
    try:
        with pytest.raises(ResponseNeverReceived):
            await http.request("POST", url, data=b"{}")
    finally:
        await _close(port, agent)


@pytest_twisted.ensureDeferred
async def test_idle_connections_are_bounded_per_host_and_closed_on_request():
    from twisted.internet import defer

    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone"
    script = Script(*[answer] * 6)
    port, http, agent, url = await _serve(script)
    agent.maxPersistentPerHost = 2
    try:
        responses = await defer.gatherResults(
            [http.request("POST", url, data=b"{}") for _ in range(5)])
        assert [await treq.content(r) for r in responses] == [b"done"] * 5
        assert script.connections == 5
        assert sum(len(idle) for idle in agent._idle.values()) == 2
        await agent.closeCachedConnections()
        assert sum(len(idle) for idle in agent._idle.values()) == 0
        assert await treq.content(await http.request("POST", url, data=b"{}")) == b"done"
        assert script.connections == 6
    finally:
        await _close(port, agent)


@pytest_twisted.ensureDeferred
async def test_a_cancelled_call_drops_its_connection():
    from twisted.internet import defer, task

    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone"
    script = Script(answer, b"", answer)  # the second is never answered
    port, http, agent, url = await _serve(script)
    try:
        connecting = http.request("POST", url, data=b"{}")
        connecting.cancel()  # before there is a connection
        with pytest.raises(defer.CancelledError):
            await connecting
        assert await treq.content(await http.request("POST", url, data=b"{}")) == b"done"
        waiting = http.request("POST", url, data=b"{}")  # on the kept connection
        while len(script.requests) < 2:
            await task.deferLater(reactor_of(), 0.01)
        waiting.cancel()
        with pytest.raises(defer.CancelledError):
            await waiting
        # That connection is gone: the next call opens another one.
        assert await treq.content(await http.request("POST", url, data=b"{}")) == b"done"
        assert script.connections == 2
    finally:
        await _close(port, agent)


def reactor_of():
    from twisted.internet import reactor

    return reactor


@pytest.mark.parametrize(("text", "uri"), [
    ("http://127.0.0.1:8080/hook?x=1", "http://127.0.0.1:8080/hook?x=1"),
    ("http://my_service:8080/a b", "http://my_service:8080/a%20b"),
    ("http://[::1]:8080/hook", "http://[::1]:8080/hook"),
    ("https://Bücher.example/ä", "https://xn--bcher-kva.example/%C3%A4"),
])
def test_an_endpoint_url_is_encoded_once(text, uri):
    url = EndpointURL.of(text)
    assert url.to_text() == uri
    # What treq asks of it on every call is then free.
    assert url.to_uri() is url
    # A URL derived from it is a plain one, encoded again on use.
    changed = url.replace(path=("ä",))
    assert (type(changed), changed.path, changed.host) == (EncodedURL, ("ä",), url.host)


@pytest.mark.parametrize(("uri", "host"), [
    (b"http://[::1]:8080/hook", b"[::1]:8080"),
    (b"http://[::1]/hook", b"[::1]"),
    (b"https://example.com:443/", b"example.com"),
    (b"http://my_service:8080/", b"my_service:8080"),
])
def test_the_host_header_brackets_an_ipv6_literal(uri, host):
    assert _Target(uri).host == host
