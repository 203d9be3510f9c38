"""The queue-operations socket: commands in, ``ok``/``err`` replies out, served
concurrently and bounded, so one socket can add jobs at a high rate."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from zope.interface import implementer

from bullmq_proxy.errors import INTERNAL, ProxyError, classify
from bullmq_proxy.logs import Logger
from bullmq_proxy.ws.commands import Scope, run_command
from bullmq_proxy.ws.messages import Call, err, ok, read_call
from bullmq_proxy.ws.session import IChannel, ISession

log = Logger(namespace="bullmq_proxy.ws.queue")

# Commands one socket may have in flight; past it the socket is not read until some finish.
MAX_IN_FLIGHT = 32


def reply_error(exc: BaseException, where: str) -> ProxyError:
    """The err reply of a failed command: a known kind, or a logged internal error."""
    error = classify(exc)
    if error is not None:
        return error
    incident = uuid.uuid4().hex
    log.failure("Unexpected error {incident} on {where}", incident=incident, where=where)
    return ProxyError(INTERNAL, f"An unexpected error occurred (incident {incident}).")


@implementer(ISession)
class QueueSession:
    def __init__(self, channel: IChannel, scope: Scope, timeout: float) -> None:
        self._channel = channel
        self._scope = scope
        self._timeout = timeout
        self._tasks: set[asyncio.Future[None]] = set()

    def received(self, payload: bytes) -> None:
        call = read_call(payload, self._channel.send)
        if call is None:
            return
        task = asyncio.ensure_future(self._serve(call))
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        if len(self._tasks) >= MAX_IN_FLIGHT:
            self._channel.hold_reading("in-flight", True)

    def _finished(self, task: asyncio.Future[None]) -> None:
        self._tasks.discard(task)
        if len(self._tasks) < MAX_IN_FLIGHT:
            self._channel.hold_reading("in-flight", False)

    async def _serve(self, call: Call) -> None:
        try:
            result = await asyncio.wait_for(
                run_command(self._scope, call.fn, call.args), self._timeout
            )
        except Exception as exc:
            self._channel.send(err(call.id, reply_error(exc, f"ws {call.fn}")))
            return
        self._channel.send(ok(call.id, result))

    def congested(self, paused: bool) -> None:
        self._channel.hold_reading("congested", paused)

    def closed(self) -> Any:
        # Commands already received still run to the end: an add the client sent is not
        # dropped because the socket went away; only its reply is.
        return asyncio.gather(*self._tasks, return_exceptions=True)
