"""Metrics of the HTTP workers and the WebSockets, through real endpoint calls and sockets."""

from __future__ import annotations

import pytest_twisted
import websockets.asyncio.client
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, task

from bullmq_proxy.bridge import as_future
from tests.support import AUTH, TOKEN, aio, make_config, start_live_proxy
from tests.workers_helpers import (
    add_job,
    eventually,
    finished,
    listen_endpoint,
    ok,
    register,
)


@pytest_twisted.async_yield_fixture
async def live(redis_url):
    proxy = await start_live_proxy(make_config(redis_url, worker_stalled_interval=1000,
                                               worker_lock_duration=2000,
                                               worker_shutdown_grace=2.0))
    yield proxy
    await proxy.stop()


async def scrape(live) -> dict:
    status, text, _ = await live.request("GET", "/metrics", headers=AUTH)
    assert status == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scraped: dict, name: str, **labels: str) -> float | None:
    return scraped.get((name, frozenset(labels.items())))


@pytest_twisted.ensureDeferred
async def test_endpoint_calls_are_counted_by_outcome_with_their_latency(live):
    from twisted.internet import reactor

    async def handler(delivery):
        if delivery.body["job"]["name"] == "slow":
            await task.deferLater(reactor, 0.5)
        return ok("done")

    endpoint = listen_endpoint(handler)
    try:
        await register(live, endpoint.url, "mail", timeout=200)
        fast = await add_job(live, "mail", name="fast")
        slow = await add_job(live, "mail", name="slow")
        assert (await finished(live, fast, "mail"))["state"] == "completed"
        assert (await finished(live, slow, "mail"))["state"] == "failed"
        scraped = await scrape(live)
    finally:
        await endpoint.close()
    calls = "bullmq_proxy_endpoint_calls_total"
    assert value(scraped, calls, queue="mail", outcome="completed") == 1
    assert value(scraped, calls, queue="mail", outcome="timed_out") == 1
    count = "bullmq_proxy_endpoint_call_duration_seconds_count"
    assert value(scraped, count, queue="mail", outcome="completed") == 1
    total = "bullmq_proxy_endpoint_call_duration_seconds_sum"
    assert value(scraped, total, queue="mail", outcome="timed_out") >= 0.2
    assert value(scraped, "bullmq_proxy_workers_registered") == 1
    assert value(scraped, "bullmq_proxy_jobs_in_flight", queue="mail") == 0
    breaker = "bullmq_proxy_circuit_breaker_state"
    assert value(scraped, breaker, queue="mail", **{breaker: "closed"}) == 1
    assert value(scraped, breaker, queue="mail", **{breaker: "open"}) == 0


@pytest_twisted.ensureDeferred
async def test_in_flight_jobs_and_removed_workers(live):
    release: defer.Deferred = defer.Deferred()

    async def handler(delivery):
        await release
        return ok()

    endpoint = listen_endpoint(handler)
    try:
        await register(live, endpoint.url, "held")
        await add_job(live, "held")
        await eventually(lambda: endpoint.deliveries, what="the call")
        scraped = await scrape(live)
        assert value(scraped, "bullmq_proxy_jobs_in_flight", queue="held") == 1
        release.callback(None)
        status, _, _ = await live.request("DELETE", "/workers/held",
                                          headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 200

        async def gone():
            return value(await scrape(live), "bullmq_proxy_workers_registered") == 0

        await eventually(gone, what="the worker to stop")
        assert value(await scrape(live), "bullmq_proxy_jobs_in_flight", queue="held") is None
    finally:
        await endpoint.close()


@pytest_twisted.ensureDeferred
async def test_websocket_connections_are_counted_by_kind(live):
    url = f"ws://127.0.0.1:{live.port.getHost().port}/ws/queues/mail"

    async def with_sockets():
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with websockets.asyncio.client.connect(url, additional_headers=headers), \
                websockets.asyncio.client.connect(url + "/events",
                                                  additional_headers=headers):
            # Scraped while both sockets are open; scrape() is Twisted-driven.
            return await as_future(defer.ensureDeferred(scrape(live)))

    scraped = await aio(with_sockets())
    gauge = "bullmq_proxy_websocket_connections"
    assert value(scraped, gauge, kind="queue") == 1
    assert value(scraped, gauge, kind="events") == 1

    async def closed():
        return value(await scrape(live), gauge, kind="queue") is None

    await eventually(closed, what="the sockets to close")
