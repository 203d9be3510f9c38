"""REST adapter of flows: ``POST /flows``."""

from __future__ import annotations

from typing import Any

from bullmq_proxy.config import Config
from bullmq_proxy.core.flows import Flows, FlowShape
from bullmq_proxy.http.router import Call, Route
from bullmq_proxy.rights import Right
from bullmq_proxy.schemas import responses as answers
from bullmq_proxy.schemas.admin import FLOW_BODY
from bullmq_proxy.validation import validate_queue_name


def _queues(trees: list[dict[str, Any]]) -> set[str]:
    """Every queue a flow adds to."""
    found: set[str] = set()
    for tree in trees:
        found.add(tree["queueName"])
        found |= _queues(tree["children"])
    return found


def flow_routes(flows: Flows, config: Config) -> list[Route]:
    shape = FlowShape(lambda name, field: validate_queue_name(name, config, field))

    async def add(call: Call) -> Any:
        body = call.data
        array = isinstance(body, list)
        trees = shape.trees(body)
        if call.principal is not None:
            for queue in sorted(_queues(trees)):
                call.principal.require(Right.WRITE, queue)
        added = await flows.add(trees, array)
        return added if array else added[0]

    return [Route(b"POST", "/flows", add, body=FLOW_BODY, response=answers.FLOW,
                  right=Right.WRITE, statuses=(200, 409),
                  summary="Add a flow (or an array of flows) atomically")]
