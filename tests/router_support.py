"""The router on its own: one public route, and requests without a connection."""

from __future__ import annotations

import io
from typing import Any

from twisted.internet import reactor
from twisted.internet.interfaces import IReactorTime
from twisted.web.test.requesthelper import DummyRequest

from bullmq_proxy.auth import Gate, Policy
from bullmq_proxy.http.router import RequestObserver, Route, Router
from tests.support import make_config


class CodedRequest(DummyRequest):
    @property
    def code(self) -> int:  # what a real Request calls its status
        return self.responseCode


def request_to(path: bytes = b"/") -> CodedRequest:
    request = CodedRequest([b""])
    request.uri = request.path = path
    request.content = io.BytesIO()
    return request


def router_for(handler: Any, observe: RequestObserver | None = None,
               clock: IReactorTime = reactor, **config: Any) -> Router:
    """A router whose only route is a public ``GET /`` answered by ``handler``."""
    router = Router(make_config(**config), Gate([], client=None, queues=None), clock, observe)
    router.add_routes([Route(b"GET", "/", handler, Policy.PUBLIC)])
    return router
