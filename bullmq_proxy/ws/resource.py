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

from bullmq_proxy.auth import Gate, Policy, header_text
from bullmq_proxy.bridge import as_deferred
from bullmq_proxy.config import Config
from bullmq_proxy.errors import INTERNAL, INVALID_FIELD, ProxyError, classify
from bullmq_proxy.logs import Logger
from bullmq_proxy.web import write_problem
from bullmq_proxy.ws.paths import Target, parse_target

log = Logger(namespace="bullmq_proxy.ws")


class WebSocketEntry(Resource):
    isLeaf = True

    def __init__(self, config: Config, gate: Gate, sockets: WebSocketResource,
                 capacity: Callable[[Target], ProxyError | None]) -> None:
        super().__init__()
        self._config = config
        self._gate = gate
        self._sockets = sockets
        self._capacity = capacity

    def render(self, request: IRequest) -> Any:
        admitted = as_deferred(self._admit(request))
        admitted.addCallbacks(self._upgrade, self._refuse, callbackArgs=(request,),
                              errbackArgs=(request,))
        return NOT_DONE_YET

    async def _admit(self, request: IRequest) -> Target:
        query = {key.decode("utf-8", "replace"): [v.decode("utf-8", "replace") for v in values]
                 for key, values in request.args.items()}
        target = parse_target(request.uri, query, self._config)
        upgrade = (header_text(request, b"upgrade") or "").lower()
        if upgrade != "websocket":
            raise ProxyError(INVALID_FIELD, "This is a WebSocket endpoint: send a WebSocket "
                             "upgrade request (Upgrade: websocket).", "Upgrade",
                             headers={"Upgrade": "websocket"})
        await self._gate.authorize(request, Policy.TOKEN, {}, allow_query=True)
        return target

    def _upgrade(self, target: Target, request: IRequest) -> None:
        if request.channel is None:
            return  # the client left while we were checking
        # Here rather than in _admit: from this check to the session's opening nothing else
        # runs, so no other upgrade can take the capacity in between.
        refused = self._capacity(target)
        if refused is not None:
            write_problem(request, refused)
            return
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
