"""A client that disconnects before its request's task runs gets nothing and breaks nothing."""

from __future__ import annotations

import asyncio

import pytest_twisted
from twisted.internet.error import ConnectionDone
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure

from tests.router_support import request_to, router_for
from tests.support import aio

handled: list[str] = []


async def handler(call):
    handled.append("ran")
    return {"ok": True}


@pytest_twisted.ensureDeferred
async def test_a_request_whose_client_left_is_not_run():
    router = router_for(handler)
    request = request_to()
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
