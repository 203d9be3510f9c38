"""A client that disconnects before its request's task runs gets nothing and breaks nothing."""

from __future__ import annotations

import asyncio
import io

import pytest_twisted
from twisted.internet.error import ConnectionDone
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.web.test.requesthelper import DummyRequest

from bullmq_proxy.auth import Gate, Policy
from bullmq_proxy.http.router import Route, Router
from tests.support import aio, make_config

handled: list[str] = []


async def handler(call):
    handled.append("ran")
    return {"ok": True}


@pytest_twisted.ensureDeferred
async def test_a_request_whose_client_left_is_not_run():
    router = Router(make_config(), Gate([], client=None, queues=None))
    router.add_routes([Route(b"GET", "/", handler, Policy.PUBLIC)])
    request = DummyRequest([b""])
    request.uri = request.path = b"/"
    request.content = io.BytesIO()
    request.content.close()  # as Twisted does when the connection is lost
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        router.render(request)
        request.processingFailed(Failure(ConnectionDone()))
        await aio(asyncio.sleep(0.05))
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert [e for e in events if e.get("log_namespace") == "bullmq_proxy.http"] == []
    assert handled == []
    assert request.written == []
    assert request.finished == 0
