"""An asyncio client for the proxy's WebSocket API (needs the ``websockets`` package:
``pip install bullmq-proxy[client]``)."""

from bullmq_proxy.client.connection import ConnectionLost, ProxyClientError, Refused
from bullmq_proxy.client.events import Event, QueueEventsClient
from bullmq_proxy.client.queue import QueueClient
from bullmq_proxy.client.worker import WorkerClient

__all__ = [
    "ConnectionLost", "Event", "ProxyClientError", "QueueClient", "QueueEventsClient",
    "Refused", "WorkerClient",
]
