"""Flow control: a client that stops reading is paused, then cut off past the limit."""

from __future__ import annotations

import asyncio
import base64
import os
import socket

import pytest_twisted
from twisted.logger import globalLogPublisher

from bullmq_proxy.redis.closing import close_blocking
from bullmq_proxy.ws.flow import Outbox, ReadValve
from tests.support import TOKEN, make_config, start_live_proxy
from tests.ws_support import connect, on_asyncio


def make_outbox(limit=10):
    written, overflows, congestion = [], [], []
    outbox = Outbox(written.append, limit, overflows.append, congestion.append)
    return outbox, written, overflows, congestion


def test_outbox_writes_through_until_paused_then_queues_in_order():
    outbox, written, overflows, congestion = make_outbox()
    outbox.send(b"a")
    outbox.pauseProducing()
    outbox.send(b"b")
    outbox.send(b"c")
    assert written == [b"a"]
    assert outbox.queued == 2
    assert congestion == [True]
    outbox.resumeProducing()
    assert written == [b"a", b"b", b"c"]
    assert outbox.queued == 0
    assert congestion == [True, False]
    assert overflows == []


def test_outbox_overflow_drops_the_queue_and_reports_once():
    outbox, written, overflows, _ = make_outbox(limit=10)
    outbox.pauseProducing()
    outbox.send(b"x" * 6)
    outbox.send(b"y" * 6)
    assert overflows == [12]
    assert outbox.queued == 0
    outbox.send(b"z")
    outbox.resumeProducing()
    assert written == []
    assert overflows == [12]


def test_outbox_keeps_order_when_paused_again_while_flushing():
    written = []
    outbox = Outbox(lambda p: (written.append(p), p == b"b" and outbox.pauseProducing()),
                    100, lambda _: None, lambda _: None)
    outbox.pauseProducing()
    for item in (b"a", b"b", b"c"):
        outbox.send(item)
    outbox.resumeProducing()
    assert written == [b"a", b"b"]
    outbox.send(b"d")
    outbox.resumeProducing()
    assert written == [b"a", b"b", b"c", b"d"]


def test_read_valve_pauses_while_any_reason_holds():
    calls = []
    valve = ReadValve(lambda: calls.append("pause"), lambda: calls.append("resume"))
    valve.hold("congested", True)
    valve.hold("in-flight", True)
    valve.hold("congested", False)
    assert calls == ["pause"]
    valve.hold("in-flight", False)
    assert calls == ["pause", "resume"]


@pytest_twisted.async_yield_fixture
async def live(redis_url):
    running = await start_live_proxy(make_config(redis_url, ws_max_buffered_bytes=256 * 1024))
    yield running
    await running.stop()


async def stalled_events_socket(url):
    """An events socket that completes the handshake and then never reads."""
    host, port = url.removeprefix("ws://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET /ws/queues/mail/events?events=progress&token={TOKEN} HTTP/1.1\r\n"
               f"Host: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
    await asyncio.get_running_loop().sock_sendall(sock, request.encode())
    head = await asyncio.get_running_loop().sock_recv(sock, 1024)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


@on_asyncio
async def test_slow_events_client_is_closed_past_the_limit(live):
    service = live.proxy.services.getServiceNamed("websockets")
    warnings = []
    globalLogPublisher.addObserver(warnings.append)
    sock = await stalled_events_socket(live.url)
    try:
        while not service.hub._feeds or not service.hub._feeds["mail"].ready.done():
            await asyncio.sleep(0.02)
        producer = await connect(live.url, "/ws/queues/mail")
        job = (await producer.call(1, "add", "n", {}))["ok"]
        blob = "x" * 100_000
        for index in range(300):
            if not any(p.target.kind.value == "events" for p in service.sockets):
                break
            reply = await producer.call(index + 2, "updateJobProgress", job["id"], {"b": blob})
            assert "ok" in reply
        while any(p.target.kind.value == "events" for p in service.sockets):
            await asyncio.sleep(0.05)
        await producer.close()
        behind = [e for e in warnings if e.get("log_namespace") == "bullmq_proxy.ws"
                  and "fell" in e.get("log_format", "")]
        assert len(behind) == 1
        assert behind[0]["queued"] > 256 * 1024
    finally:
        globalLogPublisher.removeObserver(warnings.append)
        sock.close()


@on_asyncio
async def test_peer_that_never_answers_pings_is_dropped(redis_url):
    live = await start_live_proxy(make_config(redis_url, ws_ping_interval=1,
                                              ws_ping_timeout=0.5))
    try:
        service = live.proxy.services.getServiceNamed("websockets")
        sock = await stalled_events_socket(live.url)
        try:
            while not service.sockets:
                await asyncio.sleep(0.02)
            while service.sockets:
                await asyncio.sleep(0.05)
        finally:
            sock.close()
    finally:
        await live.stop_from_asyncio()


@on_asyncio
async def test_close_blocking_cancels_again_a_read_that_swallowed_its_cancel():
    swallowed = []

    async def stubborn_read():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            swallowed.append(True)  # as redis-py can do when the reply races the cancel
        await asyncio.sleep(3600)

    read = asyncio.ensure_future(stubborn_read())
    await asyncio.sleep(0)
    read.cancel()

    async def close():
        await asyncio.gather(read, return_exceptions=True)

    await close_blocking(close(), lambda: read)
    assert swallowed == [True]
    assert read.cancelled()
