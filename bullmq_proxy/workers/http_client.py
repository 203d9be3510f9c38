"""The HTTP client of the endpoint calls: treq on a persistent connection pool.

Request bodies are written in the same turn as the request headers. treq turns ``bytes`` into a
``FileBodyProducer``, which writes through the cooperator in a later reactor turn. An endpoint
that answers before it has read the body (nginx's ``return 200`` does) then finishes the
response while the request is still being sent, and Twisted's HTTP client drops that
connection instead of returning it to the pool: every such job paid for a new TCP connection
and a name lookup in the thread pool.
"""

from __future__ import annotations

from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

from treq.client import HTTPClient
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.web.client import URI, Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool
from twisted.web.error import SchemeNotSupported
from twisted.web.iweb import IAgentEndpointFactory, IBodyProducer
from zope.interface import implementer

# Endpoint hosts are few; past this many the cache starts again rather than grow.
MAX_CACHED_ENDPOINTS = 256


def endpoint_client(reactor: Any) -> tuple[HTTPClient, HTTPConnectionPool]:
    pool = HTTPConnectionPool(reactor)
    agent = Agent.usingEndpointFactory(reactor, ReusedEndpoints(reactor), pool=pool)
    # Deliveries carry no state from one another: a cookie one endpoint sets must not ride
    # along with later jobs, nor reach the endpoints of other queues on the same host.
    no_cookies = CookieJar(DefaultCookiePolicy(allowed_domains=[]))
    return HTTPClient(agent, cookiejar=no_cookies, data_to_body_producer=ImmediateBody), pool


@implementer(IAgentEndpointFactory)
class ReusedEndpoints:
    """One client endpoint per scheme, host and port.

    ``Agent`` builds a new endpoint (IDNA-encoding the host) for every request, although only
    a request that finds no idle pooled connection uses it; an endpoint resolves its host on
    every connect, so keeping it changes nothing else."""

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._tls = BrowserLikePolicyForHTTPS()
        self._endpoints: dict[tuple[bytes, bytes, int], IStreamClientEndpoint] = {}

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
    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer: Any) -> Deferred[None]:
        consumer.write(self._body)
        return succeed(None)

    # Nothing is left to produce once startProducing has returned.
    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass
