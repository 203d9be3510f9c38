"""The REST route table of the original proxy, plus the banner."""

from __future__ import annotations

from typing import Any

from bullmq_proxy import __version__
from bullmq_proxy.auth import Policy
from bullmq_proxy.config import Config
from bullmq_proxy.core import Core
from bullmq_proxy.http.admin import job_admin_routes, queue_admin_routes
from bullmq_proxy.http.flows import flow_routes
from bullmq_proxy.http.pull import pull_routes
from bullmq_proxy.http.queues import QueueRoutes
from bullmq_proxy.http.router import Call, Reply, Route
from bullmq_proxy.http.schedulers import scheduler_routes
from bullmq_proxy.http.sse import event_routes
from bullmq_proxy.metrics import Metrics
from bullmq_proxy.rights import Right
from bullmq_proxy.schemas import admin as shapes
from bullmq_proxy.schemas import responses as answers

BANNER = f"BullMQ Proxy for Python v{__version__}"
TEXT = "text/plain"


async def banner(call: Call) -> Any:
    return Reply(text=BANNER)


def queue_routes(core: Core, metrics: Metrics, config: Config) -> list[Route]:
    q = QueueRoutes(core.queues, metrics, core.job_admin, core.events)
    jobs = "/queues/{queueName}/jobs"
    job = jobs + "/{jobId}"
    return [
        Route(b"GET", "/", banner, Policy.PUBLIC, response=answers.TEXT, media=TEXT,
              summary="The banner, with the proxy's version"),
        Route(b"POST", jobs, q.add, response=answers.ADDED, right=Right.WRITE,
              query=shapes.ADD_QUERY, statuses=(202, 502),
              summary="Add jobs (an array of {name, data, opts})"),
        Route(b"GET", jobs, q.list, query=shapes.FIND_QUERY, response=answers.JOB_LIST,
              summary="Counts and jobs of some states (or by name)"),
        Route(b"GET", job, q.get, response=answers.ref("Job"), summary="A job and its state"),
        Route(b"GET", job + "/logs", q.logs, response=answers.LOGS, summary="A job's log lines"),
        Route(b"POST", job + "/logs", q.add_log, Policy.JOB_LOCK, response=answers.TEXT_OK,
              media=TEXT, summary="Add a log line (with the job's lock token)"),
        Route(b"POST", job + "/progress", q.progress, Policy.JOB_LOCK,
              response=answers.TEXT_OK, media=TEXT,
              summary="Set a job's progress (with the job's lock token)"),
        *queue_admin_routes(core.queue_admin),
        *job_admin_routes(core.job_admin),
        *scheduler_routes(core.schedulers),
        *flow_routes(core.flows, config),
        *pull_routes(core.pulls),
        *event_routes(core.events, core.queues),
    ]
