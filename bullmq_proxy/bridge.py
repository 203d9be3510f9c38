"""The one place where asyncio coroutines and Twisted Deferreds meet.

The proxy runs a single event loop: Twisted's asyncio reactor drives the asyncio loop that
bullmq and redis-py use. Twisted code calls ``as_deferred`` to wait on a coroutine; asyncio
code calls ``as_future`` to wait on a Deferred (treq, reactor timers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from twisted.internet.defer import Deferred

T = TypeVar("T")


def install_asyncio_reactor() -> None:
    """Install Twisted's asyncio reactor on a loop that asyncio also sees as current.

    The loop must be the current one before the reactor starts: callbacks scheduled with
    ``callWhenRunning`` run before ``run_forever`` and would otherwise create tasks on a
    second, never-running loop.
    """
    from twisted.internet import asyncioreactor

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    asyncioreactor.install(loop)


def as_deferred(coro: Coroutine[Any, Any, T]) -> Deferred[T]:
    """Run a coroutine as an asyncio task; its result arrives through a Deferred."""
    return Deferred.fromFuture(asyncio.ensure_future(coro))


def as_future(deferred: Deferred[T]) -> asyncio.Future[T]:
    """Let an asyncio coroutine ``await`` a Deferred."""
    return deferred.asFuture(asyncio.get_event_loop())
