"""REST adapter of pull workers: ``POST /queues/:q/jobs/next``."""

from __future__ import annotations

from typing import Any

from bullmq_proxy.core.pull import Pulls
from bullmq_proxy.errors import invalid
from bullmq_proxy.http.router import Call, Reply, Route
from bullmq_proxy.rights import Right
from bullmq_proxy.schemas import admin as shapes
from bullmq_proxy.schemas import responses as answers


def pull_routes(pulls: Pulls) -> list[Route]:
    async def take(call: Call) -> Any:
        if "name" in call.data:
            # BullMQ takes the next job whatever its name; taking others and putting them
            # back would reorder the queue and count attempts that never ran.
            raise invalid("name", "name is not supported: a pull takes the queue's next job; "
                                  "use one queue per kind of job")
        taken = await pulls.take(call.params["queueName"], call.data["lockDuration"],
                                 call.data["wait"])
        return taken if taken is not None else Reply(status=204, text="")

    return [Route(b"POST", "/queues/{queueName}/jobs/next", take, body=shapes.PULL,
                  response=answers.PULLED, right=Right.WORKERS, statuses=(204,),
                  summary="Take the next job (waiting up to `wait` ms); settle it with its "
                          "token at .../complete or .../fail")]
