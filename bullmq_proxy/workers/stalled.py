"""bullmq's stalled-job check for every worker of the process, on one timer.

A bullmq worker runs ``moveStalledJobsToWait`` from a timer of its own every
``stalledInterval``: seven Redis commands (the script and the calls it makes) even when its
queue has nothing active, so 1,000 idle queues cost Redis about 230 commands a second. Here
one task runs the checks as they fall due (each worker's first one at a random point of its
first interval, so that they spread). Before them, one ``EXISTS`` over the active lists and
stalled sets of the due queues tells whether any has something to check; when some have, the
queues are halved until they are found (two commands per halving, against seven per check).
A check on a queue whose active list and stalled set are both empty moves nothing and marks
nothing (it only sets its throttle key and trims the event stream), so it is skipped; every
other queue gets bullmq's own check, through its worker, whose ``stalled`` and ``error``
events it fires.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any, Protocol

from twisted.logger import Logger

from bullmq_proxy.redis.connection import RedisClient

log = Logger(namespace="bullmq_proxy.workers.stalled")

# Checks falling due within this many seconds of each other run together.
TICK = 1.0


class Checked(Protocol):
    keys: dict[str, str]
    opts: dict[str, Any]

    async def runStalledJobsCheck(self) -> None: ...


class StalledChecks:
    def __init__(self, client: RedisClient) -> None:
        self._client = client
        self._due: dict[Checked, float] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Future[None] | None = None

    def add(self, worker: Checked) -> None:
        interval = worker.opts["stalledInterval"] / 1000
        self._due[worker] = time.monotonic() + interval * random.uniform(0.01, 1)
        self._changed.set()
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    def remove(self, worker: Checked) -> None:
        self._due.pop(worker, None)

    async def close(self) -> None:
        self._due.clear()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while self._due:
            now = time.monotonic()
            first = min(self._due.values())
            if first > now:
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), first - now)
                continue
            due = [worker for worker, at in self._due.items() if at <= now + TICK]
            for worker in due:
                self._due[worker] = now + worker.opts["stalledInterval"] / 1000
            try:
                busy = await self._with_keys(due)
            except Exception as error:  # Redis away: these checks wait for their next turn
                log.warn("Stalled-job checks of {count} queue(s) skipped: {error}",
                         count=len(due), error=f"{error.__class__.__name__}: {error}")
                continue
            await asyncio.gather(*(worker.runStalledJobsCheck() for worker in busy
                                   if worker in self._due))

    async def _with_keys(self, workers: list[Checked]) -> list[Checked]:
        """The workers whose queue has an active list or a stalled set."""
        keys = [key for worker in workers for key in (worker.keys["active"],
                                                      worker.keys["stalled"])]
        found = await self._client.exists(*keys)
        if not found:
            return []
        if found >= len(workers):
            return workers  # about one key a queue: halving would find them all
        half = len(workers) // 2
        first, second = await asyncio.gather(self._with_keys(workers[:half]),
                                             self._with_keys(workers[half:]))
        return first + second
