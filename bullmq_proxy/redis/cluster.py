"""What Redis Cluster asks of the proxy: keys a script touches together must share a slot,
and redis-py will not pipeline scripts (EVALSHA) on a cluster client.

BullMQ's scripts touch several keys of one queue, so each queue's keys must carry a hash
tag: either the prefix has one (``{bull}``: every queue in one slot) or each queue name has
one (``{mail}``: queues spread over the cluster).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bullmq import Job
from redis.crc import key_slot


def has_hash_tag(key_prefix: str) -> bool:
    """True when every key starting with ``key_prefix`` hashes by a tag inside it."""
    start = key_prefix.find("{")
    if start == -1:
        return False
    end = key_prefix.find("}", start + 1)
    return end > start + 1


def queue_keys_share_a_slot(prefix: str, queue_name: str) -> bool:
    return has_hash_tag(f"{prefix}:{queue_name}:")


async def add_each(jobs: Sequence[Job]) -> list[Job]:
    """Add jobs one script call at a time, in order: the cluster form of a pipelined add.

    As with a pipeline, jobs added before a failure stay added.
    """
    for job in jobs:
        job.id = await job.queue.backend.scripts.addJob(job)
    return list(jobs)


async def add_flow_each(entries: Sequence[dict[str, Any]]) -> list[Any]:
    """FlowProducer's ``addFlow`` as one script call per job, in its order (each parent
    before its children): the cluster form of its transaction. Not atomic: jobs added
    before a failure stay added."""
    ids = []
    for entry in entries:
        job = entry["job"]
        scripts = job.queue.backend.scripts
        job.id = await (scripts.addParentJob(job) if entry.get("is_parent")
                        else scripts.addJob(job))
        ids.append(job.id)
    return ids


def key_slot_of_queue(prefix: str, queue_name: str) -> int:
    """The Cluster slot of the keys of a queue (those whose name has a hash tag)."""
    return key_slot(f"{prefix}:{queue_name}:".encode())

