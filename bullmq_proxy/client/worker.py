"""``WorkerClient``: processes the jobs the proxy pushes over
``/ws/queues/:queueName/process/:concurrency``."""

from __future__ import annotations

import asyncio
import inspect
import logging
import traceback
from collections.abc import Callable
from typing import Any

from bullmq_proxy.client.connection import Connection, socket_url

log = logging.getLogger("bullmq_proxy.client")

Handler = Callable[[dict[str, Any]], Any]


class WorkerClient:
    """Calls ``handler(job)`` for each job (``job`` is the proxy's job JSON: ``id``,
    ``name``, ``data``, ``attemptsMade``...). Its return value completes the job; an
    exception fails it with the exception's message. A sync handler runs in a thread, so a
    slow one does not stall the socket. The proxy holds at most ``concurrency`` jobs out."""

    def __init__(self, url: str, queue: str, token: str, handler: Handler, *,
                 concurrency: int = 1) -> None:
        self._handler = handler
        self._tasks: set[asyncio.Future[None]] = set()
        self._connection = Connection(
            socket_url(url, queue, f"/process/{concurrency}"), token, self._received)

    async def wait_open(self, timeout: float | None = None) -> None:
        await self._connection.wait_open(timeout)

    def _received(self, message: dict[str, Any]) -> None:
        data = message.get("data")
        if not isinstance(data, dict) or data.get("type") != "process":
            if isinstance(data, dict) and "err" in data:
                log.warning("The proxy refused a reply: %s", data["err"])
            return
        task = asyncio.ensure_future(self._process(message.get("id"), data))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _process(self, message_id: Any, data: dict[str, Any]) -> None:
        job = data.get("job") or {"data": data.get("payload")}
        try:
            if inspect.iscoroutinefunction(self._handler):
                result = await self._handler(job)
            else:
                result = await asyncio.to_thread(self._handler, job)
            reply: dict[str, Any] = {"result": result}
        except Exception as err:
            reply = {"err": {"message": str(err) or err.__class__.__name__,
                             "stack": traceback.format_exc()}}
        try:
            await self._connection.send(message_id, reply)
        except Exception as err:
            # The proxy fails the attempt itself when its socket closed or the reply is late.
            log.warning("Could not reply to job %s: %s", job.get("id"), err)

    async def close(self) -> None:
        """Stop taking jobs: the proxy fails jobs still awaiting a reply (they retry per
        their options)."""
        await self._connection.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
