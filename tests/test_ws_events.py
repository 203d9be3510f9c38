"""The queue-events socket: filtered delivery, on/off, shared feeds, and its errors."""

from __future__ import annotations

import asyncio
import contextlib

import pytest_twisted
from bullmq import Queue, Worker

from tests.support import make_config, start_live_proxy
from tests.ws_support import connect, on_asyncio


@pytest_twisted.async_yield_fixture
async def live(redis_url):
    running = await start_live_proxy(make_config(redis_url))
    yield running
    await running.stop()


async def subscribed(ws, *events):
    """Wait until the socket's feed is live (the reply to ``on`` says so)."""
    reply = await ws.call(1, "on", *events)
    assert "ok" in reply, reply
    return reply["ok"]


async def events_until(ws, name, job_id=None):
    seen = []
    while True:
        message = await ws.recv()
        assert message["id"] == 0
        seen.append(message["data"])
        event = message["data"]
        if event["event"] == name and (job_id is None or event["args"][0]["jobId"] == job_id):
            return seen


@contextlib.asynccontextmanager
async def working(redis_url, processor):
    """A bullmq Worker on the queue while the block runs; yields the queue to add to."""
    queue = Queue("mail", {"connection": redis_url})
    worker = Worker("mail", processor, {"connection": redis_url})
    try:
        yield queue
    finally:
        await worker.close(force=True)
        await queue.close()


@on_asyncio
async def test_listed_events_are_delivered_in_the_seed_guide_shape(live, redis_url):
    ws = await connect(live.url, "/ws/queues/mail/events?events=completed,active,progress")
    assert await subscribed(ws) == ["active", "completed", "progress"]

    async def process(job, token):
        await job.updateProgress(50)
        return {"sent": True}

    async with working(redis_url, process) as queue:
        job = await queue.add("send", {}, {})
        seen = await events_until(ws, "completed", job.id)
    names = [event["event"] for event in seen]
    assert names == ["active", "progress", "completed"]
    completed = seen[-1]["args"]
    assert completed[0]["jobId"] == job.id
    assert completed[0]["returnvalue"] == {"sent": True}
    assert isinstance(completed[1], str)  # the stream entry id, as Node listeners get it
    assert seen[1]["args"][0]["data"] == 50
    await ws.close()


@on_asyncio
async def test_failed_event(live, redis_url):
    ws = await connect(live.url, "/ws/queues/mail/events?events=failed")
    await subscribed(ws)

    async def process(job, token):
        raise ValueError("nope")

    async with working(redis_url, process) as queue:
        job = await queue.add("send", {}, {})
        seen = await events_until(ws, "failed", job.id)
    assert [event["event"] for event in seen] == ["failed"]
    assert seen[0]["args"][0]["failedReason"] == "nope"
    await ws.close()


@on_asyncio
async def test_no_filter_means_every_event_and_off_stops_some(live, redis_url):
    ws = await connect(live.url, "/ws/queues/mail/events")
    all_events = await subscribed(ws)
    assert {"waiting", "completed"} <= set(all_events)
    assert "waiting" not in (await ws.call(2, "off", "waiting", "added"))["ok"]

    async def process(job, token):
        return 1

    async with working(redis_url, process) as queue:
        job = await queue.add("send", {}, {})
        seen = await events_until(ws, "completed", job.id)
    names = {event["event"] for event in seen}
    assert "active" in names
    assert not names & {"waiting", "added"}
    await ws.close()


@on_asyncio
async def test_on_adds_events_to_a_socket(live, redis_url):
    """The seed guide's subscribe frame."""
    ws = await connect(live.url, "/ws/queues/mail/events?events=active")
    ws.send('{"id": 1, "data": {"fn": "on", "args": ["completed"]}}')
    assert (await ws.recv())["data"]["ok"] == ["active", "completed"]

    async def process(job, token):
        return "r"

    async with working(redis_url, process) as queue:
        job = await queue.add("send", {}, {})
        seen = await events_until(ws, "completed", job.id)
    assert [event["event"] for event in seen] == ["active", "completed"]
    await ws.close()


@on_asyncio
async def test_bad_messages_get_err_replies(live):
    ws = await connect(live.url, "/ws/queues/mail/events")
    assert (await ws.call(1, "subscribe", "completed"))["err"]["field"] == "fn"
    assert (await ws.call(2, "on", "bogus"))["err"]["field"] == "args"
    assert (await ws.call(3, "on", 7))["err"]["field"] == "args"
    ws.send("[]")
    assert (await ws.recv())["data"]["err"]["field"] == "message"
    assert "ok" in await ws.call(4, "on", "completed")
    await ws.close()


@on_asyncio
async def test_sockets_of_a_queue_share_one_feed_until_the_last_leaves(live, redis_url):
    service = live.proxy.services.getServiceNamed("websockets")
    sockets = await asyncio.gather(*(
        connect(live.url, "/ws/queues/mail/events?events=completed") for _ in range(20)))
    await asyncio.gather(*(subscribed(ws) for ws in sockets))
    assert len(service.hub._feeds) == 1

    async def process(job, token):
        return 2

    async with working(redis_url, process) as queue:
        job = await queue.add("send", {}, {})
        for ws in sockets:
            last = (await events_until(ws, "completed", job.id))[-1]
            assert last["args"][0]["returnvalue"] == 2
    for ws in sockets:
        await ws.close()
    while service.hub._feeds:
        await asyncio.sleep(0.02)
