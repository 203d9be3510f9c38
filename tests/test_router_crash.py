"""A handler that raises something the problem vocabulary does not know: the client gets a
500 problem naming an incident, the log gets the traceback under the same incident, and the
request is still counted."""

from __future__ import annotations

import asyncio
import json

import pytest_twisted
from twisted.internet.error import ConnectionDone
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure

from tests.router_support import CodedRequest, request_to, router_for
from tests.support import aio


async def broken(call):
    raise RuntimeError("a bug in a handler")


async def cancelled(call):
    raise asyncio.CancelledError()


async def _render(handler, running: asyncio.Event | None = None,
                  left: asyncio.Event | None = None) -> tuple[CodedRequest, list[dict], list]:
    """Render ``handler``'s route; with ``running`` and ``left``, the client goes away once
    the handler says it runs, and the handler is then told."""
    observed: list[tuple] = []
    router = router_for(handler, lambda *seen: observed.append(seen))
    request = request_to()
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        router.render(request)
        if running is not None and left is not None:
            await aio(running.wait())
            request.processingFailed(Failure(ConnectionDone()))
            left.set()
        await aio(asyncio.sleep(0.05))
    finally:
        globalLogPublisher.removeObserver(events.append)
    crashes = [e for e in events if e.get("log_namespace") == "bullmq_proxy.http"
               and "log_failure" in e]
    return request, crashes, observed


@pytest_twisted.ensureDeferred
async def test_an_unexpected_error_is_a_500_problem_and_a_logged_traceback():
    request, [crash], observed = await _render(broken)
    assert request.responseCode == 500
    problem = json.loads(b"".join(request.written))
    assert problem["type"] == "/problems/internal"
    assert problem["instance"] == f"urn:uuid:{crash['incident']}"
    assert crash["incident"] in problem["detail"]
    assert crash["log_failure"].check(RuntimeError)
    assert "a bug in a handler" in crash["log_failure"].getTraceback()
    assert request.finished == 1
    assert observed == [("/", b"GET", 500, observed[0][3])]


@pytest_twisted.ensureDeferred
async def test_a_handler_cancelled_from_inside_is_answered_too():
    request, [crash], _ = await _render(cancelled)
    assert request.responseCode == 500
    assert crash["log_failure"].check(asyncio.CancelledError)
    assert request.finished == 1


@pytest_twisted.ensureDeferred
async def test_a_crash_after_the_client_left_is_logged_and_writes_nothing():
    running, left = asyncio.Event(), asyncio.Event()

    async def broken_once_left(call):
        running.set()
        await left.wait()
        raise RuntimeError("late")

    request, [crash], observed = await _render(broken_once_left, running, left)
    assert crash["log_failure"].check(RuntimeError)
    assert request.written == []
    assert len(observed) == 1
