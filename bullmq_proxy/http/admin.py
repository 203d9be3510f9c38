"""REST adapters of queue management and job actions: each route checks its declared shapes
(in the router) and calls the core."""

from __future__ import annotations

from typing import Any

from bullmq_proxy.core.job_admin import JobAdmin
from bullmq_proxy.core.queue_admin import QueueAdmin
from bullmq_proxy.http.router import Call, Reply, Route
from bullmq_proxy.rights import Right
from bullmq_proxy.schemas import admin as shapes
from bullmq_proxy.schemas import responses as answers


def _queue(call: Call) -> str:
    return call.params["queueName"]


def queue_admin_routes(admin: QueueAdmin) -> list[Route]:
    queue = "/queues/{queueName}"

    async def list_queues(call: Call) -> Any:
        principal = call.principal
        readable = None if principal is None else (
            lambda name: principal.may(Right.READ, name))
        return await admin.list(call.args["start"], call.args["length"], readable)

    async def summary(call: Call) -> Any:
        return await admin.summary(_queue(call))

    async def pause(call: Call) -> Any:
        return await admin.pause(_queue(call))

    async def resume(call: Call) -> Any:
        return await admin.resume(_queue(call))

    async def clean(call: Call) -> Any:
        body = call.data
        return await admin.clean(_queue(call), body["grace"], body["limit"], body["type"])

    async def drain(call: Call) -> Any:
        return await admin.drain(_queue(call), call.data["delayed"])

    async def obliterate(call: Call) -> Any:
        await admin.obliterate(_queue(call), call.args["force"])
        return Reply(status=204, text="")

    async def retry(call: Call) -> Any:
        return await admin.retry_jobs(_queue(call), call.data["state"], call.data["count"])

    async def promote(call: Call) -> Any:
        return await admin.promote_jobs(_queue(call), call.data["count"])

    async def set_rate_limit(call: Call) -> Any:
        return await admin.set_rate_limit(_queue(call), call.data["max"],
                                          call.data["duration"])

    async def remove_rate_limit(call: Call) -> Any:
        return await admin.remove_rate_limit(_queue(call))

    async def set_concurrency(call: Call) -> Any:
        return await admin.set_concurrency(_queue(call), call.data["max"])

    async def remove_concurrency(call: Call) -> Any:
        return await admin.remove_concurrency(_queue(call))

    return [
        Route(b"GET", "/queues", list_queues, query=shapes.PAGE_QUERY,
              response=answers.QUEUE_LIST,
              summary="List the queues under the prefix"),
        Route(b"GET", queue, summary, response=answers.ref("Queue"),
              summary="A queue's state, counts and limits"),
        Route(b"DELETE", queue, obliterate, query=shapes.OBLITERATE_QUERY, status=204,
              summary="Obliterate a queue"),
        Route(b"POST", queue + "/pause", pause, body=shapes.obj({}),
              response=answers.ref("Queue"),
              summary="Pause a queue"),
        Route(b"POST", queue + "/resume", resume, body=shapes.obj({}),
              response=answers.ref("Queue"),
              summary="Resume a queue"),
        Route(b"POST", queue + "/clean", clean, body=shapes.CLEAN, response=answers.REMOVED,
              summary="Remove jobs of one state older than a grace period"),
        Route(b"POST", queue + "/drain", drain, body=shapes.DRAIN,
              response=answers.ref("Queue"),
              summary="Remove the waiting (and delayed) jobs"),
        Route(b"POST", queue + "/retry", retry, body=shapes.RETRY_JOBS,
              response=answers.ref("Queue"),
              summary="Retry every failed or completed job"),
        Route(b"POST", queue + "/promote", promote, body=shapes.PROMOTE_JOBS,
              response=answers.ref("Queue"),
              summary="Promote every delayed job"),
        Route(b"PUT", queue + "/rate-limit", set_rate_limit, body=shapes.RATE_LIMIT,
              response=answers.ref("Queue"),
              summary="Set the queue's global rate limit"),
        Route(b"DELETE", queue + "/rate-limit", remove_rate_limit,
              response=answers.ref("Queue"),
              summary="Remove the queue's global rate limit"),
        Route(b"PUT", queue + "/concurrency", set_concurrency, body=shapes.CONCURRENCY,
              response=answers.ref("Queue"),
              summary="Set the queue's global concurrency"),
        Route(b"DELETE", queue + "/concurrency", remove_concurrency,
              response=answers.ref("Queue"),
              summary="Remove the queue's global concurrency"),
    ]


def job_admin_routes(admin: JobAdmin) -> list[Route]:
    job = "/queues/{queueName}/jobs/{jobId}"

    def _job(call: Call) -> str:
        return call.params["jobId"]

    async def remove(call: Call) -> Any:
        return await admin.remove(_queue(call), _job(call), call.args["children"])

    async def retry(call: Call) -> Any:
        return await admin.retry(_queue(call), _job(call))

    async def promote(call: Call) -> Any:
        return await admin.promote(_queue(call), _job(call))

    async def update(call: Call) -> Any:
        return await admin.update_data(_queue(call), _job(call), call.data["data"])

    async def priority(call: Call) -> Any:
        return await admin.change_priority(_queue(call), _job(call), call.data["priority"],
                                           call.data["lifo"])

    async def delay(call: Call) -> Any:
        return await admin.change_delay(_queue(call), _job(call), call.data["delay"])

    async def children(call: Call) -> Any:
        return await admin.children(_queue(call), _job(call), call.args["start"],
                                    call.args["length"])

    return [
        Route(b"DELETE", job, remove, query=shapes.REMOVE_JOB_QUERY,
              response=answers.ref("Job"),
              summary="Remove a job (and its children)"),
        Route(b"PATCH", job, update, body=shapes.JOB_DATA, response=answers.ref("Job"),
              summary="Replace a job's data"),
        Route(b"POST", job + "/retry", retry, body=shapes.obj({}),
              response=answers.ref("Job"),
              summary="Retry a failed or completed job"),
        Route(b"POST", job + "/promote", promote, body=shapes.obj({}),
              response=answers.ref("Job"),
              summary="Run a delayed job now"),
        Route(b"POST", job + "/priority", priority, body=shapes.PRIORITY,
              response=answers.ref("Job"),
              summary="Change a waiting job's priority"),
        Route(b"POST", job + "/delay", delay, body=shapes.CHANGE_DELAY,
              response=answers.ref("Job"),
              summary="Change a delayed job's delay"),
        Route(b"GET", job + "/children", children, query=shapes.PAGE_QUERY,
              response=answers.CHILDREN,
              summary="A parent's children: pending, processed, failed, ignored"),
    ]
