"""REQUEST_TIMEOUT holds even when the work under a request swallows the timeout's cancel:
the client gets its 504 soon after the limit, an operator gets a warning, and what the
work ends with later is not written."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest_twisted
from twisted.logger import globalLogPublisher

from bullmq_proxy.http import router as router_module
from tests.router_support import request_to, router_for
from tests.support import aio


@pytest_twisted.ensureDeferred
async def test_work_that_swallows_the_cancel_still_gets_a_504_and_writes_nothing_later(
        monkeypatch):
    monkeypatch.setattr(router_module, "OVERDUE_GRACE_SECONDS", 0.1)
    finished: list[str] = []

    async def stubborn(call):
        # As a library that loses the cancel in a race might:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(10)
        await asyncio.sleep(0.3)
        finished.append("late")
        return {"late": True}

    router = router_for(stubborn, request_timeout=0.1)
    request = request_to()
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        router.render(request)
        await aio(asyncio.sleep(0.3))  # past the limit and its grace, before the work ends
        assert request.finished == 1
        assert request.responseCode == 504
        assert json.loads(b"".join(request.written))["type"] == "/problems/timeout"
        assert finished == []
        written = list(request.written)
        for _ in range(100):
            if finished:
                break
            await aio(asyncio.sleep(0.05))
        assert finished == ["late"]
        await aio(asyncio.sleep(0.05))  # the task's done callback has run
        assert request.written == written
    finally:
        globalLogPublisher.removeObserver(events.append)
    [warning] = [e for e in events if "outlived REQUEST_TIMEOUT" in e.get("log_format", "")]
    assert warning["path"] == "/"
    assert [e for e in events if "log_failure" in e] == []


@pytest_twisted.ensureDeferred
async def test_a_request_answered_in_time_leaves_no_overdue_answer(monkeypatch):
    monkeypatch.setattr(router_module, "OVERDUE_GRACE_SECONDS", 0.05)

    async def quick(call):
        return {"ok": True}

    router = router_for(quick, request_timeout=0.05)
    request = request_to()
    router.render(request)
    await aio(asyncio.sleep(0.3))
    assert request.responseCode == 200
    assert json.loads(b"".join(request.written)) == {"ok": True}
