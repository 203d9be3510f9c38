"""The REST route table of the original proxy, plus the banner."""

from __future__ import annotations

from typing import Any

from bullmq_proxy import __version__
from bullmq_proxy.auth import Policy
from bullmq_proxy.http.queues import QueueRoutes
from bullmq_proxy.http.router import Call, Reply, Route
from bullmq_proxy.metrics import Metrics
from bullmq_proxy.queues import QueueRegistry

BANNER = f"BullMQ Proxy for Python v{__version__}"


async def banner(call: Call) -> Any:
    return Reply(text=BANNER)


def queue_routes(queues: QueueRegistry, metrics: Metrics) -> list[Route]:
    q = QueueRoutes(queues, metrics)
    jobs = "/queues/{queueName}/jobs"
    job = jobs + "/{jobId}"
    return [
        Route(b"GET", "/", banner, Policy.PUBLIC),
        Route(b"POST", jobs, q.add),
        Route(b"GET", jobs, q.list),
        Route(b"GET", job, q.get),
        Route(b"GET", job + "/logs", q.logs),
        Route(b"POST", job + "/logs", q.add_log, Policy.JOB_LOCK),
        Route(b"POST", job + "/progress", q.progress, Policy.JOB_LOCK),
    ]
