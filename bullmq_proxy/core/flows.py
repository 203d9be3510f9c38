"""Flows: trees of jobs over one or more queues, added atomically with BullMQ's FlowProducer.

A parent waits in ``waiting-children`` until every child finished, whichever worker ran the
children (HTTP-endpoint, WebSocket or Node workers); ``failParentOnFailure`` and its
siblings are BullMQ's own job options.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bullmq import FlowProducer

from bullmq_proxy.errors import invalid
from bullmq_proxy.jobs import job_json
from bullmq_proxy.queues import QueueRegistry
from bullmq_proxy.redis.layout import speak_layout
from bullmq_proxy.validation import (
    NewJob,
    refuse_unknown,
    require_object,
    validate_job,
)

# A flow's cost grows with its node count and its depth; both are bounded.
MAX_FLOW_NODES = 1000
MAX_FLOW_DEPTH = 32
NODE_FIELDS = frozenset({"name", "queueName", "data", "opts", "children"})


class FlowShape:
    """Checks a flow tree (or an array of them) node by node, naming each field by path."""

    def __init__(self, check_queue: Callable[[str, str], str]) -> None:
        self._check_queue = check_queue

    def trees(self, body: Any) -> list[dict[str, Any]]:
        roots = body if isinstance(body, list) else [body]
        if not roots:
            raise invalid("body", "The body must be a flow {name, queueName, data, opts, "
                                  "children} or a non-empty array of them")
        count = [0]
        prefix = "[{}]" if isinstance(body, list) else ""
        return [self._node(root, prefix.format(i), 1, count) for i, root in enumerate(roots)]

    def _node(self, value: Any, field: str, depth: int, count: list[int]) -> dict[str, Any]:
        name = field or "body"
        node = require_object(value, name)
        refuse_unknown(node, NODE_FIELDS, field)
        count[0] += 1
        if count[0] > MAX_FLOW_NODES:
            raise invalid(name, f"a flow holds at most {MAX_FLOW_NODES} jobs")
        if depth > MAX_FLOW_DEPTH:
            raise invalid(name, f"a flow is at most {MAX_FLOW_DEPTH} levels deep")
        queue_field = f"{field}.queueName" if field else "queueName"
        queue_name = node.get("queueName")
        if not isinstance(queue_name, str):
            raise invalid(queue_field, f"{queue_field} is required and must be a string")
        queue_name = self._check_queue(queue_name, queue_field)
        job: NewJob = validate_job({k: node[k] for k in ("name", "data", "opts") if k in node},
                                   field)
        if "repeat" in job.opts:
            raise invalid(f"{field}.opts.repeat" if field else "opts.repeat",
                          "a job of a flow cannot repeat; use a job scheduler")
        children = node.get("children", [])
        if not isinstance(children, list):
            raise invalid(f"{field}.children" if field else "children",
                          "children must be a JSON array of flows")
        child_field = f"{field}.children" if field else "children"
        return {
            "name": job.name, "queueName": queue_name, "data": job.data, "opts": job.opts,
            "children": [self._node(child, f"{child_field}[{i}]", depth + 1, count)
                         for i, child in enumerate(children)],
        }


def _rendered(tree: dict[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = {"job": job_json(tree["job"])}
    if "children" in tree:
        node["children"] = [_rendered(child) for child in tree["children"]]
    return node


class Flows:
    def __init__(self, queues: QueueRegistry) -> None:
        self._producer = FlowProducer({"connection": queues.client, "prefix": queues.prefix})
        speak_layout(self._producer.backend, queues.layout)

    async def add(self, trees: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each tree atomically; the trees answered in FlowProducer's own shape."""
        return [_rendered(await self._producer.add(tree)) for tree in trees]
