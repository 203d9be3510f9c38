"""REST adapter of flows: ``POST /flows``."""

from __future__ import annotations

from typing import Any

from bullmq_proxy.config import Config
from bullmq_proxy.core.flows import Flows, FlowShape
from bullmq_proxy.http.router import Call, Route
from bullmq_proxy.schemas import responses as answers
from bullmq_proxy.schemas.admin import FLOW_BODY
from bullmq_proxy.validation import validate_queue_name


def flow_routes(flows: Flows, config: Config) -> list[Route]:
    shape = FlowShape(lambda name, field: validate_queue_name(name, config, field))

    async def add(call: Call) -> Any:
        body = call.data
        added = await flows.add(shape.trees(body))
        return added if isinstance(body, list) else added[0]

    return [Route(b"POST", "/flows", add, body=FLOW_BODY, response=answers.FLOW,
                  summary="Add a flow (or an array of flows) atomically")]
