"""A client that disconnects before its request's task runs gets nothing and breaks nothing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest_twisted
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure

from bullmq_proxy.http.channel import LeanSite
from tests.router_support import request_to, router_for
from tests.support import aio

handled: list[str] = []


@contextlib.contextmanager
def router_log() -> Iterator[list[dict]]:
    """The router's log events while the block runs."""
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        yield events
    finally:
        globalLogPublisher.removeObserver(events.append)
    events[:] = [e for e in events if e.get("log_namespace") == "bullmq_proxy.http"]


async def handler(call):
    handled.append("ran")
    return {"ok": True}


@pytest_twisted.ensureDeferred
async def test_a_request_whose_client_left_is_not_run():
    router = router_for(handler)
    request = request_to()
    request.content.close()  # as Twisted does when the connection is lost
    with router_log() as events:
        router.render(request)
        request.processingFailed(Failure(ConnectionDone()))
        await aio(asyncio.sleep(0.05))
    assert events == []
    assert handled == []
    assert request.written == []
    assert request.finished == 0


@pytest_twisted.ensureDeferred
async def test_on_the_lean_channel_a_client_that_left_mid_work_gets_nothing_written():
    running, release = asyncio.Event(), asyncio.Event()

    async def slow(call):
        running.set()
        await release.wait()
        return {"late": True}

    site = LeanSite(router_for(slow), Clock(), max_body_size=1000, headers_timeout=30.0,
                    idle_timeout=75.0)
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5000))
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await aio(asyncio.wait_for(running.wait(), 5))
    with router_log() as events:
        channel.connectionLost(Failure(ConnectionDone()))
        release.set()
        await aio(asyncio.sleep(0.05))
    assert transport.value() == b""
    # Told of the leave, the router writes nothing, rather than finishing a lost request.
    assert events == []
