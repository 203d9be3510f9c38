"""Server-Sent Events: live queue events, resumed without a gap after a reconnect."""

from __future__ import annotations

import asyncio

import pytest_twisted

from tests.support import TOKEN, make_config, start_live_proxy
from tests.ws_support import on_asyncio

Q = "sse"


@pytest_twisted.async_yield_fixture
async def live(redis_url):
    proxy = await start_live_proxy(make_config(redis_url))
    yield proxy
    await proxy.stop()


class EventSource:
    """A minimal SSE client over a socket: the answer's head, then its chunked body read as
    events."""

    def __init__(self, reader, writer, status, head):
        self.reader, self.writer = reader, writer
        self.status, self.head = status, head
        self._text = ""

    @classmethod
    async def open(cls, live, path, headers=None, token=TOKEN):
        host, port = live.base.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Accept: text/event-stream"]
        if token:
            lines.append(f"Authorization: Bearer {token}")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode()
        return cls(reader, writer, int(head.split(" ")[1]), head)

    async def _more(self, timeout):
        size = int((await asyncio.wait_for(self.reader.readline(), timeout)).strip(), 16)
        if size == 0:
            raise AssertionError("the stream ended")
        chunk = await asyncio.wait_for(self.reader.readexactly(size + 2), timeout)
        self._text += chunk[:-2].decode()

    async def events(self, count, timeout=10):
        """The next ``count`` events as (id, event, data)."""
        found = []
        while len(found) < count:
            if "\n\n" not in self._text:
                await self._more(timeout)
                continue
            block, self._text = self._text.split("\n\n", 1)
            fields = dict(line.split(": ", 1) for line in block.split("\n")
                          if line and not line.startswith(":"))
            if "event" in fields:
                found.append((fields["id"], fields["event"], fields["data"]))
        return found

    def close(self):
        self.writer.close()


async def add(live, count, name="n"):
    from bullmq import Queue

    queue = Queue(Q, {"connection": live.context.config.redis.url})
    try:
        return [(await queue.add(name, {"n": n})).id for n in range(count)]
    finally:
        await queue.close()


@on_asyncio
async def test_events_stream_with_stream_ids(live):
    source = await EventSource.open(live, f"/queues/{Q}/events?events=added,waiting")
    assert source.status == 200
    assert "text/event-stream" in source.head
    ids = await add(live, 2)
    events = await source.events(4)
    assert [event for _, event, _ in events].count("waiting") == 2
    assert all("-" in stream_id for stream_id, _, _ in events)
    assert any(f'"jobId":"{ids[0]}"' in data for _, _, data in events)
    source.close()


@on_asyncio
async def test_a_reconnect_with_last_event_id_misses_nothing(live):
    source = await EventSource.open(live, f"/queues/{Q}/events?events=waiting")
    await add(live, 1)
    ((last_id, _, _),) = await source.events(1)
    source.close()
    missed = await add(live, 3)  # while no client listens
    again = await EventSource.open(live, f"/queues/{Q}/events?events=waiting",
                                   {"Last-Event-ID": last_id})
    later = await add(live, 1)
    events = await again.events(4)
    seen = [data for _, _, data in events]
    for job_id in [*missed, *later]:
        assert sum(f'"jobId":"{job_id}"' in data for data in seen) == 1
    ordered = [tuple(map(int, stream_id.split("-"))) for stream_id, _, _ in events]
    assert ordered == sorted(ordered)
    again.close()


@on_asyncio
async def test_bad_requests_get_problems_before_the_stream(live):
    source = await EventSource.open(live, f"/queues/{Q}/events", {"Last-Event-ID": "yesterday"})
    assert source.status == 400
    source.close()
    source = await EventSource.open(live, f"/queues/{Q}/events?events=complete")
    assert source.status == 400
    source.close()
    source = await EventSource.open(live, f"/queues/{Q}/events", token=None)
    assert source.status == 401
    source.close()


def test_a_reader_that_falls_behind_is_ended_not_buffered_without_bound():
    from bullmq_proxy.http.sse import MAX_BACKLOG, EventStream

    stream = EventStream(None, None, Q, frozenset({"waiting"}), None)
    for n in range(MAX_BACKLOG + 50):
        stream._listen("waiting", [{"jobId": str(n)}, f"{n}-0"])
    items = [stream._live.get_nowait() for _ in range(stream._live.qsize())]
    # The events it could not take yet, then the end of the stream, and nothing after.
    assert len(items) == MAX_BACKLOG + 1
    assert items[-1] is None
