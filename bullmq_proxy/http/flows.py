"""REST adapter of flows: ``POST /flows``."""

from __future__ import annotations

from typing import Any

from bullmq_proxy.config import Config
from bullmq_proxy.core.flows import Flows, FlowShape
from bullmq_proxy.http.router import Call, Route
from bullmq_proxy.validation import validate_queue_name


def flow_routes(flows: Flows, config: Config) -> list[Route]:
    shape = FlowShape(lambda name, field: validate_queue_name(name, config, field))

    async def add(call: Call) -> Any:
        body = call.json()
        array = isinstance(body, list)
        added = await flows.add(shape.trees(body), array)
        return added if array else added[0]

    return [Route(b"POST", "/flows", add, summary="Add a flow (or an array of flows)")]
