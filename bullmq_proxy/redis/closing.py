"""Closing bullmq objects whose blocking Redis read may swallow its cancellation.

redis-py can lose the cancellation of a blocking command (XREAD BLOCK, BZPOPMIN) that races
its reply; bullmq's ``close()`` then waits on that read forever. Cancelling the read again
until ``close()`` returns ends it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

CANCEL_AGAIN_AFTER = 0.5


async def close_blocking(close: Awaitable[Any], blocked: Callable[[], Any]) -> None:
    """Await ``close``; every ``CANCEL_AGAIN_AFTER`` seconds it lasts, cancel ``blocked()``
    (the task or future parked on Redis, or None)."""
    closing = asyncio.ensure_future(close)
    while not (await asyncio.wait({closing}, timeout=CANCEL_AGAIN_AFTER))[0]:
        task = blocked()
        if task is not None and not task.done():
            task.cancel()
    closing.result()
