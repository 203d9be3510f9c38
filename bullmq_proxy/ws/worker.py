"""The push-worker socket: a bullmq worker (the fetch-next loop) whose processor sends each
job to the client and waits for its ``result`` or ``err`` reply.

No reply within the message timeout fails that attempt; when the socket closes, jobs
awaiting a reply fail this attempt at once (BullMQ retries them per their options) and jobs
taken after the close go back to the queue without losing an attempt.

Its commands share the process's worker pool, whatever its concurrency; it waits for its
queue's marker on one connection of its own, named as Node BullMQ names a worker's, so that
``Queue.getWorkers()`` lists it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from bullmq import Job
from bullmq.custom_errors import DelayedError
from zope.interface import implementer

from bullmq_proxy.bounds import is_integer
from bullmq_proxy.core import moves
from bullmq_proxy.errors import invalid
from bullmq_proxy.jobs import job_json
from bullmq_proxy.logs import Logger
from bullmq_proxy.workers.connections import WorkerConnections
from bullmq_proxy.workers.fetch_next import FetchNextWorker
from bullmq_proxy.ws.messages import FrameError, decode, encode, err, salvage_id
from bullmq_proxy.ws.session import IChannel, ISession

log = Logger(namespace="bullmq_proxy.ws.worker")


class NoReply(Exception):
    """The client did not answer a job in time, or its socket closed first."""


class RemoteJobError(Exception):
    """The client's processor failed the job."""


def _failure_message(value: Any) -> str:
    if isinstance(value, dict) and isinstance(value.get("message"), str):
        return value["message"]
    if isinstance(value, str):
        return value
    return json.dumps(value)


@implementer(ISession)
class WorkerSession:
    def __init__(
        self, channel: IChannel, queue: str, concurrency: int, opts: dict[str, Any],
        timeout: float, connections: WorkerConnections, layout: str = "auto",
    ) -> None:
        self._channel = channel
        self._timeout = timeout
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._last_id = 0
        self._open = True
        self.worker = FetchNextWorker(queue, self._process, {**opts, "concurrency": concurrency},
                                      connections, listed=True, layout=layout)
        self.worker.on("error", lambda error, *_: log.warn(
            "WebSocket worker of queue {queue} hit an error: {error}",
            queue=queue, error=f"{error.__class__.__name__}: {error}"))

    async def _process(self, job: Job, token: str) -> Any:
        if not self._open:
            await moves.delay(job, token, moves.now_ms())
            raise DelayedError()
        self._last_id += 1
        message_id = self._last_id
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[message_id] = reply
        self._channel.send(encode(message_id, {
            "type": "process", "payload": job.data, "job": job_json(job), "token": token,
        }))
        try:
            data = await asyncio.wait_for(reply, self._timeout)
        except TimeoutError:
            raise NoReply(f"The WebSocket worker did not reply within {self._timeout:g}s") \
                from None
        finally:
            self._pending.pop(message_id, None)
        if data.get("err") is not None:
            raise RemoteJobError(_failure_message(data["err"]))
        return data["result"]

    def received(self, payload: bytes) -> None:
        try:
            message = decode(payload)
        except FrameError as error:
            message_id = error.id if error.id is not None else salvage_id(payload)
            reply = self._pending.get(message_id) if is_integer(message_id) else None
            if reply is not None and not reply.done():
                # A reply that cannot be read fails its job now, rather than leaving it
                # active until the message timeout.
                reply.set_exception(RemoteJobError(
                    f"The WebSocket worker's reply could not be read: {error.error.detail}"))
            self._channel.send(err(message_id, error.error))
            return
        reply = self._pending.get(message.id) if isinstance(message.id, int) else None
        if reply is None or reply.done():
            self._channel.send(err(message.id, invalid(
                "id", "No job is waiting for a reply with this id (it may have timed out).")))
            return
        if "result" not in message.data and message.data.get("err") is None:
            self._channel.send(err(message.id, invalid(
                "data", 'A reply must be {"result": ...} or {"err": ...}.')))
            return
        reply.set_result(message.data)

    def congested(self, paused: bool) -> None:
        """Nothing to hold back: at most ``concurrency`` jobs are ever in flight."""

    def closed(self) -> Any:
        self._open = False
        for reply in self._pending.values():
            if not reply.done():
                reply.set_exception(NoReply("The WebSocket worker closed before it replied"))
        return asyncio.ensure_future(self.worker.close())
