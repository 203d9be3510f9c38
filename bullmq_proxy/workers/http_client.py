"""The HTTP client of the endpoint calls: treq on a persistent connection pool.

Request bodies are written in the same turn as the request headers. treq turns ``bytes`` into a
``FileBodyProducer``, which writes through the cooperator in a later reactor turn. An endpoint
that answers before it has read the body (nginx's ``return 200`` does) then finishes the
response while the request is still being sent, and Twisted's HTTP client drops that
connection instead of returning it to the pool: every such job paid for a new TCP connection
and a name lookup in the thread pool.
"""

from __future__ import annotations

from typing import Any

from treq.client import HTTPClient
from twisted.internet.defer import Deferred, succeed
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer


def endpoint_client(reactor: Any) -> tuple[HTTPClient, HTTPConnectionPool]:
    pool = HTTPConnectionPool(reactor)
    return HTTPClient(Agent(reactor, pool=pool), data_to_body_producer=ImmediateBody), pool


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
