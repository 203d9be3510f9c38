"""What Redis Cluster asks of the proxy: keys a script touches together must share a slot,
and redis-py will not pipeline scripts (EVALSHA) on a cluster client.

BullMQ's scripts touch several keys of one queue, so each queue's keys must carry a hash
tag: either the prefix has one (``{bull}``: every queue in one slot) or each queue name has
one (``{mail}``: queues spread over the cluster).
"""

from __future__ import annotations

from collections.abc import Sequence

from bullmq import Job


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
