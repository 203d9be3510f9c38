"""HTTP-endpoint workers of many queues on a real Redis Cluster: markers in many slots on
every node, waited on by a few connections."""

from __future__ import annotations

import collections

import pytest_twisted
import redis
from redis.cluster import RedisCluster

from bullmq_proxy.config import load_config
from tests.support import AUTH, start_live_proxy
from tests.test_redis_cluster import _env, cluster, cluster_ports  # noqa: F401 - fixtures
from tests.workers_helpers import eventually, listen_endpoint, ok, register

QUEUES = 24


def connections_of_proxy(ports: list[int]) -> int:
    total = 0
    for port in ports:
        node = redis.Redis(port=port)
        own = node.client_id()
        total += sum(1 for client in node.client_list() if client["id"] != own)
        node.close()
    return total


@pytest_twisted.ensureDeferred
async def test_queues_in_many_slots_are_all_woken_and_processed_once(
        cluster: RedisCluster, cluster_ports, tmp_path):  # noqa: F811 - fixtures
    seen: collections.Counter = collections.Counter()

    async def handler(delivery):
        job = delivery.body["job"]
        seen[(job["data"], job["id"])] += 1
        return ok("done")

    endpoint = listen_endpoint(handler)
    live = await start_live_proxy(load_config(_env(cluster_ports, tmp_path)))
    queues = [f"{{spread-{n}}}" for n in range(QUEUES)]
    assert len({cluster.get_node_from_key(queue).name for queue in queues}) == 3
    markers = live.context.worker_connections.markers
    try:
        for queue in queues:
            await register(live, endpoint.url, queue, opts={"concurrency": 2})
        await eventually(lambda: markers.watched == QUEUES, what="every queue drained")
        # Three nodes; per node the worker pool, the marker lanes and the REST client's few.
        assert connections_of_proxy(cluster_ports) <= 3 * 12
        added = []
        for queue in queues:
            status, jobs, _ = await live.request(
                "POST", f"/queues/{queue.replace('{', '%7B').replace('}', '%7D')}/jobs",
                json_body=[{"name": "n", "data": queue}] * 2, headers=AUTH)
            assert status == 200, jobs
            added += [(queue, job["id"]) for job in jobs]
        await eventually(lambda: sum(seen.values()) >= len(added), timeout=30,
                         what="every job delivered")
        assert seen == collections.Counter(dict.fromkeys(added, 1))
        await eventually(lambda: all(cluster.zcard(f"bull:{queue}:completed") == 2
                                     for queue in queues), what="every job completed")
    finally:
        await endpoint.close()
        await live.stop()
