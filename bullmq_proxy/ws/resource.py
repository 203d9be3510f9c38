"""``/ws``: validates the path and authorizes the upgrade (the same Gate as REST) before
Autobahn takes the connection over; refusals are HTTP problem responses, never a socket."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from bullmq_proxy.auth import Gate, Policy, bearer_token, header_text
from bullmq_proxy.bridge import as_deferred
from bullmq_proxy.config import Config
from bullmq_proxy.errors import INTERNAL, INVALID_FIELD, ProxyError, classify
from bullmq_proxy.logs import Logger
from bullmq_proxy.rights import Right
from bullmq_proxy.web import write_problem
from bullmq_proxy.ws.paths import Kind, Target, parse_target
from bullmq_proxy.ws.session import Admission

log = Logger(namespace="bullmq_proxy.ws")


# The right an upgrade needs; a queue socket's commands check theirs one by one.
UPGRADE_RIGHTS = {Kind.QUEUE: None, Kind.WORKER: Right.WORKERS, Kind.EVENTS: Right.READ}


class WebSocketEntry(Resource):
    isLeaf = True

    def __init__(self, config: Config, gate: Gate, sockets: WebSocketResource,
                 capacity: Callable[[Target], ProxyError | None],
                 admitted: Callable[[Any, Admission], None]) -> None:
        super().__init__()
        self._config = config
        self._gate = gate
        self._sockets = sockets
        self._capacity = capacity
        self._admitted = admitted

    def render(self, request: IRequest) -> Any:
        admitted = as_deferred(self._admit(request))
        admitted.addCallbacks(self._upgrade, self._refuse, callbackArgs=(request,),
                              errbackArgs=(request,))
        return NOT_DONE_YET

    async def _admit(self, request: IRequest) -> tuple[Target, Admission]:
        query = {key.decode("utf-8", "replace"): [v.decode("utf-8", "replace") for v in values]
                 for key, values in request.args.items()}
        target = parse_target(request.uri, query, self._config)
        upgrade = (header_text(request, b"upgrade") or "").lower()
        if upgrade != "websocket":
            raise ProxyError(INVALID_FIELD, "This is a WebSocket endpoint: send a WebSocket "
                             "upgrade request (Upgrade: websocket).", "Upgrade",
                             headers={"Upgrade": "websocket"})
        principal = await self._gate.authorize(
            request, Policy.TOKEN, {"queueName": target.queue}, right=UPGRADE_RIGHTS[target.kind],
            allow_query=True)
        assert principal is not None, "the TOKEN policy answers who the token is"
        if not principal.covers(target.queue):
            # A queue socket's commands each check their right; the queue is checked here.
            principal.require(Right.READ, target.queue)
        token = bearer_token(request, allow_query=True)
        assert token is not None
        return target, Admission(token, principal)

    def _upgrade(self, admitted: tuple[Target, Admission], request: IRequest) -> None:
        target, admission = admitted
        if request.channel is None:
            return  # the client left while we were checking
        # Here rather than in _admit: from this check to the session's opening nothing else
        # runs, so no other upgrade can take the capacity in between.
        refused = self._capacity(target)
        if refused is not None:
            write_problem(request, refused)
            return
        # The protocol Autobahn builds on this transport finds who was admitted by it.
        self._admitted(request.channel.transport, admission)
        body = self._sockets.render(request)
        if body is not NOT_DONE_YET:
            request.write(body)
            request.finish()

    def _refuse(self, failure: Failure, request: IRequest) -> None:
        error = classify(failure.value)
        if error is None:
            incident = uuid.uuid4().hex
            log.failure("Unexpected error {incident} on a WebSocket upgrade", failure,
                        incident=incident)
            error = ProxyError(INTERNAL, f"An unexpected error occurred (incident {incident}).")
        if request.channel is not None:
            write_problem(request, error)
