"""REST adapters of job schedulers."""

from __future__ import annotations

from typing import Any

from bullmq_proxy.core.schedulers import Schedulers, checked_scheduler
from bullmq_proxy.http.router import Call, Route
from bullmq_proxy.schemas import admin as shapes
from bullmq_proxy.schemas import responses as answers
from bullmq_proxy.validation import validate_job_id


def scheduler_routes(schedulers: Schedulers) -> list[Route]:
    base = "/queues/{queueName}/schedulers"
    one = base + "/{schedulerId}"

    def ids(call: Call) -> tuple[str, str]:
        return (call.params["queueName"],
                validate_job_id(call.params["schedulerId"], "schedulerId"))

    async def upsert(call: Call) -> Any:
        return await schedulers.upsert(*ids(call), checked_scheduler(call.data))

    async def listed(call: Call) -> Any:
        return await schedulers.list(call.params["queueName"], call.args["start"],
                                     call.args["length"])

    async def get(call: Call) -> Any:
        return await schedulers.get(*ids(call))

    async def remove(call: Call) -> Any:
        return await schedulers.remove(*ids(call))

    return [
        Route(b"GET", base, listed, query=shapes.PAGE_QUERY, response=answers.SCHEDULER_LIST,
              summary="A queue's job schedulers, soonest first"),
        Route(b"PUT", one, upsert, body=shapes.SCHEDULER, response=answers.ref("Scheduler"),
              summary="Create or replace a job scheduler"),
        Route(b"GET", one, get, response=answers.ref("Scheduler"),
              summary="A job scheduler with its next run time"),
        Route(b"DELETE", one, remove, response=answers.ref("Scheduler"),
              summary="Remove a job scheduler"),
    ]
