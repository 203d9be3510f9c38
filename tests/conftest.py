"""Test session: a real redis-server on a free port, flushed before each test that uses it."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import pytest_twisted
import redis
from twisted.internet import defer

from bullmq_proxy.redis.embedded import free_port
from tests.node_fleet import NodeApp, install_node_bullmq
from tests.redis_process import start_redis
from tests.support import make_config, start_live_proxy, start_proxy


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """The URL of a private redis-server started for this test session."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bullmq-proxy-test-redis-") as data_dir:
        process = start_redis(port, data_dir)
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(10)


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The session's Redis, emptied for this test."""
    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    return redis_server


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    """A plain blocking client for inspecting Redis from a test."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest_twisted.async_yield_fixture
async def proxy(redis_url):
    """A proxy on the test Redis, with its resource tree driven through StubTreq."""
    running = await start_proxy(make_config(redis_url))
    yield running
    await running.stop()


@pytest_twisted.async_yield_fixture
async def proxy5(redis_url):
    """A proxy serving every queue in Node BullMQ 5's layout (BULLMQ_LAYOUT=5)."""
    running = await start_proxy(make_config(redis_url, bullmq_layout="5"))
    yield running
    await running.stop()


@pytest_twisted.async_yield_fixture
async def live_proxy(redis_url):
    """A proxy on the test Redis listening on a loopback port (WebSocket workers need one)."""
    running = await start_live_proxy(make_config(redis_url))
    yield running
    await running.stop()


@pytest.fixture(scope="session")
def node_bullmq() -> None:
    install_node_bullmq()


@pytest_twisted.async_yield_fixture
async def apps(node_bullmq, redis_url) -> AsyncIterator[Callable[[str], Awaitable[NodeApp]]]:
    """Starts Node BullMQ apps (``await apps("5")`` from an asyncio test body); all are
    closed at the end of the test."""
    started: list[NodeApp] = []

    async def start(major: str) -> NodeApp:
        app = await NodeApp.start(major, redis_url)
        started.append(app)
        return app

    yield start
    for app in started:
        await defer.Deferred.fromFuture(asyncio.ensure_future(app.close()))
