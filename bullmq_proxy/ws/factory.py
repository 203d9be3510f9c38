"""The Autobahn factory: protocol options (keepalive, frame limits) from the config."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autobahn.twisted.websocket import WebSocketServerFactory

from bullmq_proxy.config import Config
from bullmq_proxy.ws.protocol import ProxyProtocol

if TYPE_CHECKING:
    from bullmq_proxy.ws.service import WebSocketService


class ProxyWebSocketFactory(WebSocketServerFactory):
    def __init__(self, service: WebSocketService, config: Config, reactor: Any) -> None:
        super().__init__(reactor=reactor)
        self._service = service
        self.setProtocolOptions(
            autoPingInterval=config.ws_ping_interval,
            autoPingTimeout=config.ws_ping_timeout,
            # A message is a request body by another route: the same limit applies.
            maxMessagePayloadSize=config.max_body_size,
            maxFramePayloadSize=config.max_body_size,
            openHandshakeTimeout=config.request_timeout,
            # Tell a client why it is cut off (e.g. 1009, message too big) before dropping.
            failByDrop=False,
        )

    def buildProtocol(self, addr: Any) -> ProxyProtocol:
        protocol = ProxyProtocol(self._service)
        protocol.factory = self
        return protocol
