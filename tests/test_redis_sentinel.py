"""Redis Sentinel: a real master and a real Sentinel monitoring it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
import pytest_twisted
import redis

from bullmq_proxy.config import load_config
from bullmq_proxy.redis.embedded import find_redis_server, free_port, redis_server_argv
from tests.probes import until_ready
from tests.redis_process import wait_for_redis
from tests.support import AUTH, TOKEN, start_proxy

MASTER = "proxy-master"


@pytest.fixture(scope="module")
def sentinel_port(tmp_path_factory) -> Iterator[int]:
    directory = tmp_path_factory.mktemp("sentinel")
    master_port, port = free_port(), free_port()
    conf = directory / "sentinel.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\nsentinel monitor {MASTER} 127.0.0.1 "
                    f"{master_port} 1\n")
    processes = [
        subprocess.Popen(redis_server_argv(find_redis_server(), master_port, str(directory),
                                           persistent=False),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([find_redis_server(), str(conf), "--sentinel"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    try:
        sentinel = redis.Redis(port=port, decode_responses=True)
        wait_for_redis(lambda: sentinel.sentinel_get_master_addr_by_name(MASTER),
                    "Sentinel knowing the master")
        sentinel.close()
        master = redis.Redis(port=master_port)
        wait_for_redis(master.ping, "master start")
        master.flushall()
        master.close()
        yield port
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)


@pytest_twisted.ensureDeferred
async def test_jobs_through_the_master_the_sentinel_names(sentinel_port, tmp_path):
    # The first Sentinel is down: the next one answers.
    env = {"REDIS_SENTINELS": f"127.0.0.1:{free_port()},127.0.0.1:{sentinel_port}",
           "REDIS_SENTINEL_MASTER": MASTER, "AUTH_TOKENS": TOKEN, "DATA_DIR": str(tmp_path)}
    config = load_config(env)
    assert not config.redis.embedded
    proxy = await start_proxy(config)
    try:
        status, added, _ = await proxy.request(
            "POST", "/queues/mail/jobs", json_body=[{"name": "a", "data": {"n": 1}}],
            headers=AUTH)
        assert status == 200, added
        status, job, _ = await proxy.request("GET", f"/queues/mail/jobs/{added[0]['id']}",
                                             headers=AUTH)
        assert (status, job["data"]) == (200, {"n": 1})
        await until_ready(proxy)
    finally:
        await proxy.stop()


@pytest_twisted.ensureDeferred
async def test_unknown_master_name_is_not_ready(sentinel_port, tmp_path):
    env = {"REDIS_SENTINELS": f"127.0.0.1:{sentinel_port}", "REDIS_SENTINEL_MASTER": "nope",
           "AUTH_TOKENS": TOKEN, "DATA_DIR": str(tmp_path)}
    proxy = await start_proxy(load_config(env))
    try:
        status, body, _ = await proxy.request("GET", "/readyz", headers=AUTH)
        assert status == 503
        assert "MasterNotFoundError" in body["checks"]["redis"]
    finally:
        await proxy.stop()


def test_sentinel_port_defaults_to_26379():
    config = load_config({"REDIS_SENTINELS": "10.0.0.1, 10.0.0.2:26380",
                          "REDIS_SENTINEL_MASTER": "m"})
    assert config.redis.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26380))
    assert config.redis.display() == "master 'm' via Sentinels 10.0.0.1:26379,10.0.0.2:26380"
