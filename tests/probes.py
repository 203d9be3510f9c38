"""Waiting for /readyz: right after start the worker registry may still be loading."""

from __future__ import annotations

from typing import Any

from twisted.internet import task

from tests.support import AUTH


async def until_ready(proxy: Any, timeout: float = 10) -> dict:
    """The 200 body of GET /readyz, polled until the proxy is ready."""
    from twisted.internet import reactor

    body: Any = None
    for _ in range(int(timeout / 0.05)):
        status, body, _ = await proxy.request("GET", "/readyz", headers=AUTH)
        if status == 200:
            return body
        await task.deferLater(reactor, 0.05)
    raise AssertionError(f"/readyz never answered 200; last: {body}")
