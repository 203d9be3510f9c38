"""Flows: trees of jobs over one or more queues, added atomically with BullMQ's FlowProducer.

A parent waits in ``waiting-children`` until every child finished, whichever worker ran the
children (HTTP-endpoint, WebSocket or Node workers); ``failParentOnFailure`` and its
siblings are BullMQ's own job options.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from bullmq import FlowProducer
from bullmq.utils import is_redis_cluster

from bullmq_proxy.errors import CONFLICT, ProxyError, invalid
from bullmq_proxy.jobs import job_json
from bullmq_proxy.queues import QueueRegistry
from bullmq_proxy.redis.cluster import add_flow_each, key_slot_of_queue
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
# What a child's failure does to its parent: BullMQ's job options, at most one of them true.
ON_CHILD_FAILURE = ("failParentOnFailure", "continueParentOnFailure",
                    "ignoreDependencyOnFailure", "removeDependencyOnFailure")


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
        job_spec = {k: node[k] for k in ("name", "data", "opts") if k in node}
        on_failure = self._on_child_failure(job_spec, field, depth)
        job: NewJob = validate_job(job_spec, field)
        if "repeat" in job.opts:
            raise invalid(f"{field}.opts.repeat" if field else "opts.repeat",
                          "a job of a flow cannot repeat; use a job scheduler")
        children = node.get("children", [])
        if not isinstance(children, list):
            raise invalid(f"{field}.children" if field else "children",
                          "children must be a JSON array of flows")
        child_field = f"{field}.children" if field else "children"
        return {
            "name": job.name, "queueName": queue_name, "data": job.data,
            "opts": {**job.opts, **on_failure},
            "children": [self._node(child, f"{child_field}[{i}]", depth + 1, count)
                         for i, child in enumerate(children)],
        }

    @staticmethod
    def _on_child_failure(job_spec: dict[str, Any], field: str, depth: int) -> dict[str, bool]:
        """Takes the options of ``ON_CHILD_FAILURE`` out of the node's opts, checked: only a
        child has a parent to tell, and BullMQ accepts one of them at most."""
        opts = job_spec.get("opts")
        if not isinstance(opts, dict):
            return {}
        opts_field = f"{field}.opts" if field else "opts"
        taken = {key: opts[key] for key in ON_CHILD_FAILURE if key in opts}
        for key, value in taken.items():
            if not isinstance(value, bool):
                raise invalid(f"{opts_field}.{key}", f"{opts_field}.{key} must be a boolean")
            if depth == 1:
                raise invalid(f"{opts_field}.{key}", f"{opts_field}.{key} applies to a child "
                                                      "job; a flow's root has no parent")
        if sum(taken.values()) > 1:
            raise invalid(opts_field, f"{opts_field} may set at most one of "
                                      f"{', '.join(ON_CHILD_FAILURE)}")
        job_spec["opts"] = {k: v for k, v in opts.items() if k not in taken}
        return {key: True for key, value in taken.items() if value}


def _rendered(tree: dict[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = {"job": job_json(tree["job"])}
    if "children" in tree:
        node["children"] = [_rendered(child) for child in tree["children"]]
    return node


def _walk(node: dict[str, Any], field: str) -> Iterator[tuple[dict[str, Any], str]]:
    """A tree's nodes (requested, or added: the same shape) with their request paths."""
    yield node, field
    for index, child in enumerate(node.get("children", [])):
        yield from _walk(child, f"{field}.children[{index}]" if field else f"children[{index}]")


class Flows:
    def __init__(self, queues: QueueRegistry) -> None:
        self._queues = queues
        self._producer = FlowProducer({"connection": queues.client, "prefix": queues.prefix})
        speak_layout(self._producer.backend, queues.layout)
        self._cluster = is_redis_cluster(queues.client)
        if self._cluster:
            # redis-py runs no scripts in a Cluster transaction.
            self._producer.backend.addFlow = add_flow_each

    async def add(self, trees: list[dict[str, Any]], array: bool = False
                  ) -> list[dict[str, Any]]:
        """Each tree atomically; the trees answered in FlowProducer's own shape. ``array``:
        the trees came as a JSON array (errors name ``[i]...``)."""
        fields = [f"[{index}]" if array else "" for index in range(len(trees))]
        for tree, field in zip(trees, fields, strict=True):
            if self._cluster:
                self._refuse_children_in_other_slots(tree, field)
            await self._refuse_adopted_children(tree, field)
        added = []
        for tree, field in zip(trees, fields, strict=True):
            result = await self._producer.add(tree)
            # BullMQ answers a child it refused with an error code for its id, having added
            # the rest of the tree in the same transaction (a race the check above lost).
            for (node, path), (done, _) in zip(_walk(tree, field), _walk(result, field),
                                                strict=True):
                if isinstance(done["job"].id, int):
                    raise await self._adopted(node, path)
            added.append(_rendered(result))
        return added

    def _refuse_children_in_other_slots(self, tree: dict[str, Any], field: str) -> None:
        """On a Cluster a child's scripts write its parent's keys too: both queues must
        hash to one slot."""
        prefix = self._queues.prefix
        for node, path in _walk(tree, field):
            slot = key_slot_of_queue(prefix, node["queueName"])
            for index, child in enumerate(node["children"]):
                if key_slot_of_queue(prefix, child["queueName"]) != slot:
                    where = f"{path}.children[{index}]" if path else f"children[{index}]"
                    raise invalid(f"{where}.queueName", "with Redis Cluster a child's queue "
                                  "needs its parent's hash tag, e.g. {mail} for both")

    async def _refuse_adopted_children(self, tree: dict[str, Any], field: str) -> None:
        """A 409 for a child whose ``jobId`` names a job of another parent: BullMQ would
        refuse that child alone and leave its parent waiting for it forever."""
        named = []
        for node, path in _walk(tree, field):
            own = node["opts"].get("jobId")
            parent = f"{self._queues.prefix}:{node['queueName']}:{own}" if own else None
            for index, child in enumerate(node["children"]):
                if "jobId" in child["opts"]:
                    child_path = f"{path}.children[{index}]" if path else f"children[{index}]"
                    named.append((child, child_path, parent))
        if not named:
            return
        async with self._queues.client.pipeline(transaction=False) as pipe:
            for child, _, _ in named:
                pipe.hget(self._queues.key(child["queueName"], child["opts"]["jobId"]),
                          "parentKey")
            parents = await pipe.execute()
        for (child, path, parent), existing in zip(named, parents, strict=True):
            if existing is not None and existing != parent:
                raise await self._adopted(child, path)

    async def _adopted(self, node: dict[str, Any], path: str) -> ProxyError:
        job_id, queue_name = node["opts"]["jobId"], node["queueName"]
        state = await self._queues.get(queue_name).getJobState(job_id)
        return ProxyError(CONFLICT, f"Job {job_id!r} of queue {queue_name!r} already has "
                                    "another parent; a job has one parent.",
                          f"{path}.opts.jobId" if path else "opts.jobId", state=state)
