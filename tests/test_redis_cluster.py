"""The proxy on a real 3-node Redis Cluster: REST end to end, keys spread over the nodes."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import attrs
import pytest
import pytest_twisted
import redis
from redis.cluster import RedisCluster

from bullmq_proxy.config import ConfigError, load_config
from bullmq_proxy.redis.cluster import has_hash_tag, queue_keys_share_a_slot
from tests.probes import until_ready
from tests.redis_cluster import running_cluster
from tests.support import AUTH, TOKEN, start_live_proxy, start_proxy
from tests.workers_helpers import (
    QUEUE,
    add_job,
    finished,
    listen_endpoint,
    ok,
    post_json,
    register,
)

WORKER_KEYS = {"WORKER_METADATA_KEY": "{bmqp}:w:meta",
               "WORKER_METADATA_STREAM": "{bmqp}:w:stream"}


@pytest.fixture(scope="module")
def cluster_ports(tmp_path_factory) -> Iterator[list[int]]:
    with running_cluster(tmp_path_factory.mktemp("cluster")) as ports:
        yield ports


@pytest.fixture
def cluster(cluster_ports) -> Iterator[RedisCluster]:
    """A client on the cluster, every node emptied for this test."""
    for port in cluster_ports:
        node = redis.Redis(port=port)
        node.flushall()
        node.close()
    client = RedisCluster(host="127.0.0.1", port=cluster_ports[0], decode_responses=True)
    yield client
    client.close()


def _env(ports: list[int], tmp_path, **extra: str) -> dict[str, str]:
    return {"REDIS_URL": f"redis+cluster://127.0.0.1:{ports[0]}", "AUTH_TOKENS": TOKEN,
            "DATA_DIR": str(tmp_path), **WORKER_KEYS, **extra}


@pytest_twisted.async_yield_fixture
async def tagged_prefix_proxy(cluster, cluster_ports, tmp_path):
    proxy = await start_proxy(load_config(_env(cluster_ports, tmp_path, QUEUE_PREFIX="{bull}")))
    yield proxy
    await proxy.stop()


@pytest_twisted.async_yield_fixture
async def plain_prefix_proxy(cluster, cluster_ports, tmp_path):
    proxy = await start_proxy(load_config(_env(cluster_ports, tmp_path)))
    yield proxy
    await proxy.stop()


async def _rest_round_trip(proxy, queue: str, cluster: RedisCluster, prefix: str) -> None:
    path = f"/queues/{quote(queue, safe='')}/jobs"
    jobs = [{"name": "plain", "data": {"n": 1}},
            {"name": "urgent", "data": 2, "opts": {"priority": 1}},
            {"name": "later", "data": None, "opts": {"delay": 60000}},
            {"name": "every", "data": {}, "opts": {"repeat": {"every": 60000}}}]
    status, added, _ = await proxy.request("POST", path, json_body=jobs, headers=AUTH)
    assert status == 200, added
    assert [job["name"] for job in added] == ["plain", "urgent", "later", "every"]
    status, job, _ = await proxy.request("GET", f"{path}/{added[0]['id']}", headers=AUTH)
    assert status == 200
    assert job["data"] == {"n": 1}
    assert job["state"] == "waiting"
    status, listed, _ = await proxy.request(
        "GET", f"{path}?statuses=waiting,prioritized,delayed", headers=AUTH)
    assert status == 200
    # An "every" scheduler runs its first job at once.
    assert listed["counts"] == {"waiting": 2, "prioritized": 1, "delayed": 1}
    assert {job["name"] for job in listed["jobs"]} == {"plain", "urgent", "later", "every"}
    status, missing, _ = await proxy.request("GET", f"{path}/nope", headers=AUTH)
    assert status == 404
    assert missing["field"] == "jobId"
    assert cluster.hget(f"{prefix}:{queue}:{added[0]['id']}", "name") == "plain"


@pytest_twisted.ensureDeferred
async def test_rest_api_with_a_hash_tagged_prefix(tagged_prefix_proxy, cluster):
    await _rest_round_trip(tagged_prefix_proxy, "mail", cluster, "{bull}")
    await _manage(tagged_prefix_proxy, "admin", cluster, "{bull}")


@pytest_twisted.ensureDeferred
async def test_rest_api_with_hash_tagged_queue_names(plain_prefix_proxy, cluster):
    await _rest_round_trip(plain_prefix_proxy, "{mail}", cluster, "bull")
    await _manage(plain_prefix_proxy, "{admin}", cluster, "bull")


def _one_tag_per_node(cluster: RedisCluster, nodes: int) -> list[str]:
    """Hash tags whose slots each of the nodes owns, one per node."""
    owners: dict[str, str] = {}
    for n in range(200):
        tag = f"q{n}"
        node = cluster.get_node_from_key(f"{{{tag}}}")
        owners.setdefault(node.name, tag)
        if len(owners) == nodes:
            break
    return list(owners.values())


@pytest_twisted.ensureDeferred
async def test_hash_tagged_queues_spread_over_every_node(plain_prefix_proxy, cluster,
                                                         cluster_ports):
    for tag in _one_tag_per_node(cluster, len(cluster_ports)):
        status, _, _ = await plain_prefix_proxy.request(
            "POST", f"/queues/{quote('{' + tag + '}', safe='')}/jobs",
            json_body=[{"name": "a", "data": 1}], headers=AUTH)
        assert status == 200
    for port in cluster_ports:
        node = redis.Redis(port=port)
        assert node.dbsize() > 0, f"node {port} holds no queue"
        node.close()


@pytest_twisted.ensureDeferred
async def test_get_queues_lists_the_queues_of_every_node(plain_prefix_proxy, cluster,
                                                         cluster_ports):
    names = sorted(f"{{{tag}}}" for tag in _one_tag_per_node(cluster, len(cluster_ports)))
    for name in names:
        await plain_prefix_proxy.request("PUT", f"/queues/{quote(name, safe='')}/concurrency",
                                         json_body={"max": 2}, headers=AUTH)
    status, listing, _ = await plain_prefix_proxy.request("GET", "/queues", headers=AUTH)
    assert status == 200
    assert [queue["name"] for queue in listing["queues"]] == names


async def _manage(proxy, queue: str, cluster: RedisCluster, prefix: str) -> None:
    """Queue, job and scheduler management on one queue of the cluster."""
    path = f"/queues/{quote(queue, safe='')}"

    async def call(method, route, body=None, status=200):
        code, answer, _ = await proxy.request(method, path + route, json_body=body,
                                              headers=AUTH)
        assert code == status, answer
        return answer

    added = await call("POST", "/jobs", [{"name": "a", "data": 1},
                                         {"name": "b", "data": 2, "opts": {"delay": 60000}}])
    assert (await call("POST", "/pause"))["paused"] is True
    assert (await call("POST", "/resume"))["paused"] is False
    delayed = await call("POST", f"/jobs/{added[1]['id']}/delay", {"delay": 120000})
    assert delayed["state"] == "delayed"
    assert (await call("POST", f"/jobs/{added[1]['id']}/promote"))["state"] == "waiting"
    scheduler = await call("PUT", "/schedulers/tick", {"every": 60000})
    assert (await call("GET", "/schedulers"))["total"] == 1
    await call("DELETE", "/schedulers/tick")
    assert (await call("POST", "/clean", {"type": "wait"}))["removed"] != []
    await call("PUT", "/rate-limit", {"max": 1, "duration": 1000})
    assert cluster.hget(f"{prefix}:{queue}:meta", "max") == "1"
    await call("DELETE", "", status=204)
    assert cluster.exists(f"{prefix}:{queue}:meta", f"{prefix}:{queue}:{added[0]['id']}",
                          f"{prefix}:{queue}:{scheduler['nextJob']['id']}") == 0


@pytest_twisted.ensureDeferred
async def test_flows_on_a_cluster_keep_each_family_in_one_slot(plain_prefix_proxy, cluster):
    flow = {"name": "render", "queueName": "{video}", "data": {}, "children": [
        {"name": "frame", "queueName": "{video}frames", "data": {"n": n}} for n in range(3)]}
    status, added, _ = await plain_prefix_proxy.request("POST", "/flows", json_body=flow,
                                                        headers=AUTH)
    assert status == 200, added
    parent = added["job"]["id"]
    assert cluster.zscore("bull:{video}:waiting-children", parent) is not None
    assert cluster.smembers(f"bull:{{video}}:{parent}:dependencies") == {
        f"bull:{{video}}frames:{child['job']['id']}" for child in added["children"]}
    status, children, _ = await plain_prefix_proxy.request(
        "GET", f"/queues/%7Bvideo%7D/jobs/{parent}/children", headers=AUTH)
    assert (status, children["counts"]["unprocessed"]) == (200, 3)
    # A child in another slot could not tell its parent: refused before anything is added.
    keys = cluster.dbsize()
    elsewhere = {**flow, "children": [{"name": "frame", "queueName": "{audio}", "data": {}}]}
    status, problem, _ = await plain_prefix_proxy.request("POST", "/flows",
                                                          json_body=elsewhere, headers=AUTH)
    assert (status, problem["field"]) == (400, "children[0].queueName")
    assert cluster.dbsize() == keys


@pytest_twisted.ensureDeferred
async def test_untagged_queue_name_is_refused_before_redis(plain_prefix_proxy):
    status, body, _ = await plain_prefix_proxy.request(
        "POST", "/queues/mail/jobs", json_body=[{"name": "a", "data": 1}], headers=AUTH)
    assert status == 400
    assert body["field"] == "queueName"
    assert "hash tag" in body["detail"]


@pytest_twisted.ensureDeferred
async def test_probes_and_metrics_on_a_cluster(tagged_prefix_proxy):
    body = await until_ready(tagged_prefix_proxy)
    assert body["checks"] == {"redis": "ok", "workers": "ok", "shutdown": "ok"}
    await tagged_prefix_proxy.request("POST", "/queues/mail/jobs",
                                      json_body=[{"name": "a", "data": 1}], headers=AUTH)
    _, text, _ = await tagged_prefix_proxy.request("GET", "/metrics", headers=AUTH)
    assert 'bullmq_proxy_jobs_added_total{queue="mail"} 1.0' in text


@pytest_twisted.ensureDeferred
async def test_cluster_flag_with_host_and_port(cluster, cluster_ports, tmp_path):
    env = {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(cluster_ports[1]),
           "REDIS_CLUSTER": "true", "QUEUE_PREFIX": "{bull}", "AUTH_TOKENS": TOKEN,
           "DATA_DIR": str(tmp_path), **WORKER_KEYS}
    proxy = await start_proxy(load_config(env))
    try:
        status, added, _ = await proxy.request(
            "POST", "/queues/mail/jobs", json_body=[{"name": "a", "data": 1}], headers=AUTH)
        assert status == 200
        assert cluster.hget(f"{{bull}}:mail:{added[0]['id']}", "name") == "a"
    finally:
        await proxy.stop()


@pytest_twisted.ensureDeferred
async def test_http_worker_end_to_end_on_a_cluster(cluster, cluster_ports, tmp_path):
    """The original's worker scenario: registration, delivery, progress, log, completion."""
    config = attrs.evolve(load_config(_env(cluster_ports, tmp_path)),
                          worker_stalled_interval=1000, worker_lock_duration=2000,
                          worker_shutdown_grace=5.0)
    live = await start_live_proxy(config)
    base = live.base

    async def handler(delivery):
        job, token = delivery.body["job"], delivery.body["token"]
        url = f"{base}/queues/{quote(QUEUE, safe='')}/jobs/{job['id']}"
        assert await post_json(url + "/progress", 100, token) == (200, "OK")
        assert await post_json(url + "/logs", "log message", token) == (200, "OK")
        return ok("foo bar")

    endpoint = listen_endpoint(handler)
    try:
        job_id = await add_job(live)
        await register(live, endpoint.url)
        job = await finished(live, job_id)
        assert job["state"] == "completed", job
        assert job["returnvalue"] == "foo bar"
        assert job["progress"] == 100
        status, logs, _ = await live.request(
            "GET", f"/queues/{quote(QUEUE, safe='')}/jobs/{job_id}/logs", headers=AUTH)
        assert (status, logs) == (200, {"logs": ["log message"], "count": 1})
        assert cluster.hexists(WORKER_KEYS["WORKER_METADATA_KEY"], QUEUE)
        assert cluster.xlen(WORKER_KEYS["WORKER_METADATA_STREAM"]) == 1
    finally:
        await endpoint.close()
        await live.stop()


def test_default_worker_keys_are_refused_on_a_cluster(tmp_path):
    env = {"REDIS_URL": "redis+cluster://127.0.0.1:7000", "AUTH_TOKENS": TOKEN}
    with pytest.raises(ConfigError, match=r"\{bmqp\}:w:meta and \{bmqp\}:w:stream"):
        load_config(env)


@pytest.mark.parametrize(("env", "message"), [
    ({"REDIS_URL": "unix:///tmp/redis.sock", "REDIS_CLUSTER": "true"}, "unix:// socket"),
    ({"REDIS_SENTINELS": "127.0.0.1:26379"}, "must be set together"),
    ({"REDIS_SENTINEL_MASTER": "mymaster"}, "must be set together"),
    ({"REDIS_SENTINELS": "127.0.0.1:26379", "REDIS_SENTINEL_MASTER": "m",
      "REDIS_URL": "redis://127.0.0.1:6379"}, "cannot be combined"),
    ({"REDIS_SENTINELS": ":26379", "REDIS_SENTINEL_MASTER": "m"}, "without a host"),
    ({"REDIS_URL": "redis+sentinel://x"}, "REDIS_URL must be a redis://"),
])
def test_inconsistent_deployment_settings_are_refused(env, message):
    with pytest.raises(ConfigError, match=message):
        load_config({**env, **WORKER_KEYS})


def test_cluster_url_scheme_sets_the_cluster_flag():
    config = load_config({"REDIS_URL": "rediss+cluster://u:p@redis.example:7001",
                          **WORKER_KEYS})
    assert config.redis.cluster
    assert config.redis.url == "rediss://u:p@redis.example:7001"
    assert config.redis.uses_tls
    assert config.redis.display() == "Redis Cluster at rediss://redis.example:7001"
    assert "p@" not in repr(config)


@pytest.mark.parametrize(("prefix", "tagged"), [
    ("bull:{mail}:", True), ("{bull}:mail:", True), ("bull:mail:", False),
    ("bull:{}:", False), ("bull:}{mail:", False), ("bull:{mail:", False),
])
def test_hash_tag_detection(prefix, tagged):
    assert has_hash_tag(prefix) is tagged


def test_queue_keys_share_a_slot():
    assert queue_keys_share_a_slot("{bull}", "mail")
    assert queue_keys_share_a_slot("bull", "{mail}")
    assert not queue_keys_share_a_slot("bull", "mail")
