"""The Autobahn protocol of every proxy socket: frames in and out, flow control, and a
session chosen by the socket's path."""

from __future__ import annotations

from typing import TYPE_CHECKING

from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from zope.interface import implementer

from bullmq_proxy.errors import ProxyError
from bullmq_proxy.logs import Logger
from bullmq_proxy.ws.flow import Outbox, ReadValve
from bullmq_proxy.ws.paths import Target, parse_target
from bullmq_proxy.ws.session import Admission, IChannel, ISession

if TYPE_CHECKING:
    from bullmq_proxy.ws.service import WebSocketService

log = Logger(namespace="bullmq_proxy.ws")

# Autobahn lets an application close with 1000 or 3000-4999 only. Both codes make clients
# that reconnect on abnormal closes (the Bun client does) come back, unlike 1000.
CLOSE_TOO_SLOW = 4008
CLOSE_GOING_AWAY = 4001
CLOSE_TOKEN_REFUSED = 4401


@implementer(IChannel)
class ProxyProtocol(WebSocketServerProtocol):
    def __init__(self, service: WebSocketService) -> None:
        super().__init__()
        self._service = service
        self.target: Target | None = None
        self.admission: Admission | None = None
        self.session: ISession | None = None
        self._outbox: Outbox | None = None
        self._valve: ReadValve | None = None

    def onConnect(self, request: ConnectionRequest) -> None:
        # The resource validated the path before the upgrade; this only reads it back.
        try:
            self.target = parse_target(
                request.path.encode("utf-8"), request.params, self._service.config)
        except ProxyError as err:
            raise ConnectionDeny(err.kind.status, err.detail) from None

    def onOpen(self) -> None:
        transport = self.transport
        if getattr(transport, "producer", None) is not None:
            # The HTTP channel that served the upgrade request is still registered.
            transport.unregisterProducer()
        self._outbox = Outbox(
            lambda payload: self.sendMessage(payload, isBinary=False),
            self._service.config.ws_max_buffered_bytes,
            self._too_slow,
            self._congested,
        )
        transport.registerProducer(self._outbox, True)
        self._valve = ReadValve(transport.pauseProducing, transport.resumeProducing)
        assert self.target is not None
        self.admission = self._service.admission(transport)
        self.session = self._service.open_session(self, self.target)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.session is not None:
            self.session.received(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self._outbox is not None:
            self._outbox.stopProducing()
        session, self.session = self.session, None
        if session is not None:
            self._service.close_session(self, session)

    # IChannel

    def send(self, payload: bytes) -> None:
        if self._outbox is not None and self.state == self.STATE_OPEN:
            self._outbox.send(payload)

    def hold_reading(self, reason: str, holding: bool) -> None:
        if self._valve is not None and self.state == self.STATE_OPEN:
            self._valve.hold(reason, holding)

    def _congested(self, paused: bool) -> None:
        if self.session is not None:
            self.session.congested(paused)

    def _too_slow(self, queued: int) -> None:
        log.warn("Closing a WebSocket of queue {queue}: the client fell {queued} bytes behind",
                 queue=self.target.queue if self.target else "?", queued=queued)
        self.sendClose(CLOSE_TOO_SLOW, "client too slow: outgoing buffer limit exceeded")

    def refuse_token(self) -> None:
        """The token this socket was opened with is no longer accepted (a reload)."""
        self.sendClose(CLOSE_TOKEN_REFUSED, "token no longer accepted")

    def go_away(self) -> None:
        self.sendClose(CLOSE_GOING_AWAY, "server shutting down")

