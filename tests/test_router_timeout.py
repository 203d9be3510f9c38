"""REQUEST_TIMEOUT on one shared timer: every request past the limit gets its 504 and its
work cancelled, a request answered in time is left alone, and a stream runs past the limit."""

from __future__ import annotations

import asyncio
import json

import pytest_twisted
from twisted.internet.task import Clock

from bullmq_proxy.http.router import Stream
from tests.router_support import request_to, router_for
from tests.support import aio

LIMIT = 2.0


async def turns(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def problem(request) -> dict:
    return json.loads(b"".join(request.written))


@pytest_twisted.ensureDeferred
async def test_requests_past_the_limit_get_504_their_work_cancelled_on_one_timer():
    clock = Clock()
    cancelled: list[str] = []

    async def forever(call):
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            cancelled.append("cancelled")
            raise

    router = router_for(forever, clock=clock, request_timeout=LIMIT)
    requests = [request_to() for _ in range(5)]
    for request in requests:
        router.render(request)
        clock.advance(0.1)
    await aio(turns())
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(LIMIT - 0.5)
    await aio(turns())
    assert [r.finished for r in requests] == [0] * 5
    clock.advance(1.0)  # past the limit of every request
    await aio(turns())
    assert cancelled == ["cancelled"] * 5
    assert [r.responseCode for r in requests] == [504] * 5
    assert {problem(r)["type"] for r in requests} == {"/problems/timeout"}
    written = [list(r.written) for r in requests]
    clock.advance(10)  # the overdue grace finds nothing to answer
    await aio(turns())
    assert [list(r.written) for r in requests] == written
    assert [r.finished for r in requests] == [1] * 5


@pytest_twisted.ensureDeferred
async def test_a_request_answered_in_time_is_never_timed_out_later():
    clock = Clock()

    async def quick(call):
        await asyncio.sleep(0)
        return {"ok": True}

    router = router_for(quick, clock=clock, request_timeout=LIMIT)
    late = request_to()
    router.render(late)
    await aio(turns())
    assert late.responseCode == 200
    clock.advance(LIMIT + 5)
    await aio(turns())
    assert problem(late) == {"ok": True}
    assert late.finished == 1


@pytest_twisted.ensureDeferred
async def test_a_stream_runs_past_the_limit():
    clock = Clock()
    ended = asyncio.Event()

    async def serve(request):
        await ended.wait()
        request.write(b"data: done\n\n")

    async def streaming(call):
        return Stream(b"text/event-stream", serve)

    router = router_for(streaming, clock=clock, request_timeout=LIMIT)
    request = request_to()
    router.render(request)
    await aio(turns())
    clock.advance(LIMIT * 3)
    await aio(turns())
    assert request.finished == 0
    ended.set()
    await aio(turns())
    assert request.responseCode == 200
    assert request.written == [b"data: done\n\n"]
    assert request.finished == 1
