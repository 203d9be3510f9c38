"""bullmq-proxy: an HTTP and WebSocket proxy for BullMQ job queues, as a Twisted server."""

__version__ = "0.1.0"
