"""The endpoint HTTP client: connections kept (even with endpoints that answer early), one
endpoint per host, certificates checked."""

from __future__ import annotations

import pytest
import pytest_twisted
import treq
from twisted.internet import protocol, ssl
from twisted.internet.endpoints import HostnameEndpoint, TCP4ServerEndpoint
from twisted.web.client import URI, ResponseNeverReceived
from twisted.web.error import SchemeNotSupported
from twisted.web.resource import Resource
from twisted.web.server import Site

from bullmq_proxy.workers.http_client import (
    MAX_CACHED_ENDPOINTS,
    ReusedEndpoints,
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
