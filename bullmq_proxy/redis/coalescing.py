"""Several workers' script calls of one event-loop turn, sent as one pipelined round trip.

Under load every slot of every worker completes a job and takes the next one
(``moveToFinished`` with fetch-next) or takes one (``moveToActive``) in its own Redis call.
Calls made in the same turn of the loop go out together here: one write, one read, one
connection of the pool, instead of one each. Each caller still gets its own answer or its
own error; a lone call goes out at the end of its turn. bullmq's scripts and their keys are
unchanged, so nothing of what a call does changes, only how it travels. Redis Cluster
clients are left alone (redis-py does not pipeline scripts there).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from typing import Any

from bullmq.utils import is_redis_cluster

from bullmq_proxy.redis import known_scripts

# The scripts the worker loop calls once per job.
COALESCED = ("moveToFinished", "moveToActive")
MAX_BATCH = 256

_wrapped: weakref.WeakKeyDictionary[Any, dict[int, Any]] = weakref.WeakKeyDictionary()


class CoalescedScript:
    """Stands for one registered script on one client; calls without a pipeline of their
    own are gathered and sent in one."""

    def __init__(self, script: Any, client: Any) -> None:
        self.script = script
        self._client = client
        self._waiting: list[tuple[Sequence[Any], Sequence[Any], asyncio.Future[Any]]] = []
        self._scheduled = False

    def __call__(self, keys: Sequence[Any], args: Sequence[Any] = (), client: Any = None
                 ) -> Any:
        if client is not None:
            return self.script(keys=keys, args=args, client=client)
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        self._waiting.append((keys, args, answer))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush, loop)
        return answer

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._scheduled = False
        while self._waiting:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            loop.create_task(self._send(batch))

    async def _send(self, batch: list[tuple[Sequence[Any], Sequence[Any],
                                            asyncio.Future[Any]]]) -> None:
        if len(batch) == 1:
            keys, args, answer = batch[0]
            try:
                result = await self.script(keys=keys, args=args)
            except BaseException as err:
                if not answer.done():
                    answer.set_exception(err)
                return
            if not answer.done():
                answer.set_result(result)
            return
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for keys, args, _ in batch:
                    await self.script(keys=keys, args=args, client=pipe)
                results = await known_scripts.execute(self._client, pipe)
        except BaseException as err:
            for _, _, answer in batch:
                if not answer.done():
                    answer.set_exception(err)
            return
        for (_, _, answer), result in zip(batch, results, strict=True):
            if answer.done():
                continue
            if isinstance(result, Exception):
                answer.set_exception(result)
            else:
                answer.set_result(result)


def coalesce(backend: Any) -> None:
    """Make a worker's bullmq backend send its per-job scripts through the client's
    coalescer (shared by every worker on that client)."""
    client = backend.connection.conn
    if is_redis_cluster(client):
        return
    commands: dict[str, Any] = backend.scripts.commands
    shared = _wrapped.setdefault(client, {})
    for name in COALESCED:
        script = commands[name]
        wrapped = shared.get(id(script))
        if wrapped is None or wrapped.script is not script:
            wrapped = shared[id(script)] = CoalescedScript(script, client)
        commands[name] = wrapped
