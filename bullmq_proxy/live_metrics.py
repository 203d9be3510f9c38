"""Gauges read from live state at scrape time: the running workers and the open sockets.

The services keep that state anyway (``GET /workers/:queue`` shows it); mirroring it at
scrape time keeps metric updates out of their hot paths and can never drift from it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from bullmq_proxy.metrics import Metrics


def worker_gauges(metrics: Metrics, workers: Any) -> Callable[[], None]:
    """For a ``WorkersService``: workers registered, jobs in flight, breaker states."""

    def refresh() -> None:
        running = dict(workers.workers)
        metrics.workers_registered.set(len(running))
        metrics.workers_refused.clear()
        for queue in list(workers.refused):
            metrics.workers_refused.labels(queue).set(1)
        metrics.jobs_in_flight.clear()
        metrics.circuit_breaker_state.clear()
        for queue, worker in running.items():
            dispatcher = worker.dispatcher
            metrics.jobs_in_flight.labels(queue).set(dispatcher.state.in_flight)
            state = dispatcher.breaker.state.replace("-", "_")
            metrics.circuit_breaker_state.labels(queue).state(state)

    return refresh


def websocket_gauges(metrics: Metrics, websockets: Any) -> Callable[[], None]:
    """For a ``WebSocketService``: open sockets by kind (queue, worker, events)."""

    def refresh() -> None:
        kinds = Counter(
            protocol.target.kind.value for protocol in list(websockets.sockets)
            if protocol.target is not None
        )
        metrics.websocket_connections.clear()
        for kind, count in kinds.items():
            metrics.websocket_connections.labels(kind).set(count)
        metrics.websocket_worker_slots.set(websockets.worker_slots()[1])

    return refresh
