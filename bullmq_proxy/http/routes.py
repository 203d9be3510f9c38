"""The REST route table of the original proxy, plus the banner."""

from __future__ import annotations

from typing import Any

from bullmq_proxy import __version__
from bullmq_proxy.auth import Policy
from bullmq_proxy.config import Config
from bullmq_proxy.core import Core
from bullmq_proxy.http.admin import job_admin_routes, queue_admin_routes
from bullmq_proxy.http.flows import flow_routes
from bullmq_proxy.http.queues import QueueRoutes
from bullmq_proxy.http.router import Call, Reply, Route
from bullmq_proxy.http.schedulers import scheduler_routes
from bullmq_proxy.metrics import Metrics

BANNER = f"BullMQ Proxy for Python v{__version__}"


async def banner(call: Call) -> Any:
    return Reply(text=BANNER)


def queue_routes(core: Core, metrics: Metrics, config: Config) -> list[Route]:
    q = QueueRoutes(core.queues, metrics, core.job_admin)
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
        *queue_admin_routes(core.queue_admin),
        *job_admin_routes(core.job_admin),
        *scheduler_routes(core.schedulers),
        *flow_routes(core.flows, config),
    ]
