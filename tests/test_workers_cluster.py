"""HTTP-endpoint workers of many queues on a real Redis Cluster: markers in many slots on
every node, waited on by a few connections."""

from __future__ import annotations

import collections

import pytest_twisted
import redis
from redis.cluster import RedisCluster

from bullmq_proxy.config import load_config
from bullmq_proxy.workers.connections import MARKER_LANES, POOL_SIZE
from tests.support import AUTH, start_live_proxy
from tests.test_redis_cluster import _env, cluster, cluster_ports  # noqa: F401 - fixtures
from tests.workers_helpers import eventually, listen_endpoint, ok, register

QUEUES = 24
# The REST client's connections: requests here come one at a time, beside the registry's reads.
REST_FEW = 6


def newest_client_ids(ports: list[int]) -> dict[int, int]:
    """Each node's newest client id: ids only grow, so later ones are clients opened since."""
    newest = {}
    for port in ports:
        with redis.Redis(port=port) as node:
            newest[port] = node.client_id()
    return newest


def names_since(newest: dict[int, int]) -> dict[int, collections.Counter]:
    """The names of each node's clients opened since ``newest``: counting from a mark leaves
    out the test's own clients and those of earlier tests the server has not yet seen close."""
    names = {}
    for port, mark in newest.items():
        with redis.Redis(port=port) as node:
            own = node.client_id()
            names[port] = collections.Counter(
                client["name"] for client in node.client_list()
                if mark < int(client["id"]) != own)
    return names


@pytest_twisted.ensureDeferred
async def test_queues_in_many_slots_are_all_woken_and_processed_once(
        cluster: RedisCluster, cluster_ports, tmp_path):  # noqa: F811 - fixtures
    seen: collections.Counter = collections.Counter()

    async def handler(delivery):
        job = delivery.body["job"]
        seen[(job["data"], job["id"])] += 1
        return ok("done")

    endpoint = listen_endpoint(handler)
    before = newest_client_ids(cluster_ports)
    live = await start_live_proxy(load_config(_env(cluster_ports, tmp_path)))
    queues = [f"{{spread-{n}}}" for n in range(QUEUES)]
    assert len({cluster.get_node_from_key(queue).name for queue in queues}) == 3
    markers = live.context.worker_connections.markers
    try:
        for queue in queues:
            await register(live, endpoint.url, queue, opts={"concurrency": 2})
        await eventually(lambda: markers.watched == QUEUES, what="every queue drained")
        # Three nodes; per node the worker pool, the marker lanes and the REST client's few.
        # Per node, whatever the load: the shared worker pool, the marker lanes, and a few
        # unnamed connections of the REST client; never one per queue or per slot. A lane
        # moved between hot and cold drops its connection, which the node lists until it
        # has seen the close, so the counts are polled until they settle. Each redis-py
        # Cluster client also keeps the connection it discovered the cluster on, to the seed.
        counts: dict[int, collections.Counter] = {}

        def within_bounds() -> bool:
            counts.update(names_since(before))
            return all(names["bullmq-proxy:workers"] <= POOL_SIZE + seed
                       and names["bullmq-proxy:markers"] <= MARKER_LANES + seed
                       and names[""] <= REST_FEW + seed
                       for port, names in counts.items()
                       for seed in [int(port == cluster_ports[0])])

        try:
            await eventually(within_bounds, timeout=5)
        except AssertionError:
            raise AssertionError(f"more connections than the bounds: {counts}") from None
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
