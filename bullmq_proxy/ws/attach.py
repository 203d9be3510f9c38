"""Wires the WebSocket API into an assembled proxy: the service and the ``/ws`` resource."""

from __future__ import annotations

from typing import Any

from autobahn.twisted.resource import WebSocketResource
from twisted.application.service import MultiService

from bullmq_proxy.live_metrics import websocket_gauges
from bullmq_proxy.ws.factory import ProxyWebSocketFactory
from bullmq_proxy.ws.resource import WebSocketEntry
from bullmq_proxy.ws.service import WebSocketService


def attach_websockets(context: Any, top: MultiService) -> WebSocketService:
    service = WebSocketService(context.config, context.core, context.metrics,
                               context.worker_connections)
    service.setServiceParent(top)
    context.metrics.on_scrape(websocket_gauges(context.metrics, service))
    factory = ProxyWebSocketFactory(service, context.config, context.reactor)
    context.root.putChild(b"ws", WebSocketEntry(context.config, context.gate,
                                                WebSocketResource(factory),
                                                service.refuse_worker, service.admitted))
    context.gate.reloaded.append(lambda: service.tokens_reloaded(context.gate.principal))
    return service
