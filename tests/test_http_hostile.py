"""Malformed and hostile HTTP against the proxy on a real socket: each gets a JSON problem
(or an orderly close), never a dropped connection without an answer, never a write to Redis."""

from __future__ import annotations

import json
from typing import Any

import pytest_twisted
import treq
from twisted.internet import defer, protocol, ssl
from twisted.internet.endpoints import TCP4ClientEndpoint

from bullmq_proxy.endpoints import listen_endpoint
from bullmq_proxy.http.site import build_site
from tests.certificates import make_ca, make_leaf
from tests.support import TOKEN, make_config, start_live_proxy, start_proxy
from tests.test_http_channel import responses

LIMIT = 2000


class _Collect(protocol.Protocol):
    def __init__(self) -> None:
        self.received = b""
        self.closed: defer.Deferred[bytes] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(self.received)


async def exchange(port: int, *pieces: bytes, gap: float = 0.0, guard: float = 20.0) -> bytes:
    """Send ``pieces`` (``gap`` seconds apart) and return all the server sent until it
    closed the connection; ``guard`` ends a connection the server would hold for ever."""
    from twisted.internet import reactor

    client = _Collect()
    await TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(
        protocol.Factory.forProtocol(lambda: client))
    guarding = reactor.callLater(guard, client.transport.abortConnection)
    for piece in pieces:
        if client.closed.called:
            break
        client.transport.write(piece)
        if gap:
            await _sleep(reactor, gap)
    received = await client.closed
    if guarding.active():
        guarding.cancel()
    return received


async def _sleep(reactor: Any, seconds: float) -> None:
    from twisted.internet import task

    await task.deferLater(reactor, seconds)


def problem(raw: bytes) -> tuple[int, dict[str, Any]]:
    [(status, headers, body)] = responses(raw)
    assert headers["content-type"] == "application/problem+json"
    return status, json.loads(body)


@pytest_twisted.async_yield_fixture
async def live(redis_url):
    running = await start_live_proxy(make_config(redis_url, max_body_size=LIMIT,
                                                 http_headers_timeout=0.5))
    yield running
    await running.stop()


def _port(live: Any) -> int:
    return live.port.getHost().port


AUTH = f"Authorization: Bearer {TOKEN}\r\n".encode()


@pytest_twisted.ensureDeferred
async def test_content_length_with_transfer_encoding_is_refused_not_smuggled(live, sync_redis):
    smuggled = b'[{"name": "smuggled", "data": 1}]'
    raw = await exchange(_port(live), (
        b"POST /queues/mail/jobs HTTP/1.1\r\n" + AUTH + b"Content-Type: application/json\r\n"
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        b"POST /queues/mail/jobs HTTP/1.1\r\n" + AUTH + b"Content-Length: %d\r\n\r\n%s"
        % (len(smuggled), smuggled)))
    status, body = problem(raw)
    assert status == 400
    assert body["type"] == "/problems/invalid-http"
    assert sync_redis.keys("bull:mail:*") == []


@pytest_twisted.ensureDeferred
async def test_headers_over_16_kib_get_431(live):
    raw = await exchange(_port(live), b"GET /queues/mail/jobs HTTP/1.1\r\n" + AUTH
                         + b"X-Flood: " + b"f" * (16 * 1024) + b"\r\n\r\n")
    status, body = problem(raw)
    assert status == 431
    assert body["type"] == "/problems/headers-too-large"


@pytest_twisted.ensureDeferred
async def test_a_header_flood_gets_431(live):
    flood = b"".join(b"X-Flood-%d: x\r\n" % n for n in range(1000))
    raw = await exchange(_port(live), b"GET / HTTP/1.1\r\n" + flood + b"\r\n")
    assert problem(raw)[0] == 431


@pytest_twisted.ensureDeferred
async def test_expect_100_continue_over_the_limit_is_413_before_any_body(live, sync_redis):
    # The body is never sent: the answer must come from the headers alone.
    raw = await exchange(_port(live), b"POST /queues/mail/jobs HTTP/1.1\r\n" + AUTH
                         + b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % (LIMIT + 1))
    assert b"100 Continue" not in raw
    status, body = problem(raw)
    assert status == 413
    assert body["type"] == "/problems/payload-too-large"
    assert sync_redis.keys("bull:mail:*") == []


@pytest_twisted.ensureDeferred
async def test_expect_100_continue_within_the_limit_adds_the_job(live, sync_redis):
    from twisted.internet import reactor

    client = _Collect()
    await TCP4ClientEndpoint(reactor, "127.0.0.1", _port(live)).connect(
        protocol.Factory.forProtocol(lambda: client))
    jobs = b'[{"name": "a", "data": 1}]'
    client.transport.write(b"POST /queues/mail/jobs HTTP/1.1\r\n" + AUTH + b"Content-Length: %d"
                           b"\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n" % len(jobs))
    while b"\r\n\r\n" not in client.received:
        await _sleep(reactor, 0.01)
    assert client.received == b"HTTP/1.1 100 Continue\r\n\r\n"
    client.received = b""
    client.transport.write(jobs)
    raw = await client.closed
    [(status, _, body)] = responses(raw)
    assert status == 200
    assert json.loads(body)[0]["name"] == "a"
    assert sync_redis.llen("bull:mail:wait") == 1


@pytest_twisted.ensureDeferred
async def test_headers_trickled_byte_by_byte_are_cut_off_with_408(live):
    request = b"GET /queues/mail/jobs HTTP/1.1\r\n" + AUTH + b"\r\n"
    raw = await exchange(_port(live), *(bytes([b]) for b in request), gap=0.05)
    status, body = problem(raw)
    assert status == 408
    assert body["type"] == "/problems/request-timeout"


@pytest_twisted.ensureDeferred
async def test_many_slow_clients_do_not_hold_up_a_quick_one(live):
    from twisted.internet import reactor

    slow = []
    for _ in range(50):
        client = _Collect()
        await TCP4ClientEndpoint(reactor, "127.0.0.1", _port(live)).connect(
            protocol.Factory.forProtocol(lambda client=client: client))
        client.transport.write(b"GET / HTTP/1.1\r\nX-Slow: ")
        slow.append(client)
    raw = await exchange(_port(live), b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert responses(raw)[0][0] == 200
    # And every slow one is refused once its deadline passes, not kept.
    for client in slow:
        status, _ = problem(await client.closed)
        assert status == 408


@pytest_twisted.ensureDeferred
async def test_pipelined_adds_are_answered_in_order(live, sync_redis):
    pipelined = b"".join(
        b"POST /queues/mail/jobs HTTP/1.1\r\n" + AUTH + b"Content-Length: %d\r\n\r\n%s"
        % (len(jobs), jobs)
        for jobs in (json.dumps([{"name": f"n{i}", "data": i}]).encode() for i in range(5)))
    raw = await exchange(_port(live), pipelined + b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
    answers = responses(raw)
    assert [status for status, _, _ in answers] == [200] * 6
    assert [json.loads(body)[0]["name"] for _, _, body in answers[:5]] == \
        [f"n{i}" for i in range(5)]
    assert sync_redis.llen("bull:mail:wait") == 5


@pytest_twisted.ensureDeferred
async def test_a_tls_listener_serves_the_api(redis_url, tmp_path):
    from twisted.internet import reactor

    ca = make_ca("ca", tmp_path)
    cert, key = make_leaf("proxy", ca, tmp_path)
    config = make_config(redis_url)
    proxy = await start_proxy(config)
    endpoint = listen_endpoint(reactor, f"ssl:0:interface=127.0.0.1:privateKey={key}:"
                                        f"certKey={cert}")
    port = await endpoint.listen(build_site(config, proxy.context.root, reactor))
    try:
        trust = ssl.Certificate.loadPEM((tmp_path / "ca.crt").read_text())
        from twisted.web.client import Agent, BrowserLikePolicyForHTTPS

        client = treq.client.HTTPClient(Agent(reactor, BrowserLikePolicyForHTTPS(trust)))
        base = f"https://127.0.0.1:{port.getHost().port}"
        for _ in range(2):
            response = await client.post(base + "/queues/mail/jobs",
                                         json=[{"name": "tls", "data": 1}],
                                         headers={"Authorization": f"Bearer {TOKEN}"})
            assert response.code == 200
            assert (await response.json())[0]["name"] == "tls"
    finally:
        await port.stopListening()
        await proxy.stop()
