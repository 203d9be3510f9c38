"""Redis over TLS: a real redis-server with a CA made here, client certificates required."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import pytest_twisted
import redis

from bullmq_proxy.config import ConfigError, load_config
from bullmq_proxy.redis.embedded import find_redis_server, free_port
from tests.certificates import make_ca, make_leaf
from tests.probes import until_ready
from tests.redis_process import wait_for_redis
from tests.support import AUTH, TOKEN, start_proxy


@attrs.frozen
class TlsRedis:
    port: int
    ca: Path
    cert: Path
    key: Path
    other_ca: Path


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory) -> Iterator[TlsRedis]:
    directory = tmp_path_factory.mktemp("tls")
    ca = make_ca("test-ca", directory)
    make_ca("other-ca", directory)
    server_cert, server_key = make_leaf("server", ca, directory)
    client_cert, client_key = make_leaf("client", ca, directory)
    port = free_port()
    process = subprocess.Popen(
        [find_redis_server(), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(server_cert), "--tls-key-file", str(server_key),
         "--tls-ca-cert-file", str(directory / "test-ca.crt"), "--tls-auth-clients", "yes",
         "--save", "", "--appendonly", "no", "--dir", str(directory),
         "--maxmemory-policy", "noeviction"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, ssl=True, ssl_ca_certs=str(directory / "test-ca.crt"),
                         ssl_certfile=str(client_cert), ssl_keyfile=str(client_key))
    try:
        wait_for_redis(client.ping, "the TLS redis-server starting", process=process)
        yield TlsRedis(port, directory / "test-ca.crt", client_cert, client_key,
                       directory / "other-ca.crt")
    finally:
        client.close()
        process.terminate()
        process.wait(10)


def _env(tls: TlsRedis, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"AUTH_TOKENS": TOKEN, "DATA_DIR": str(tmp_path), **extra}


def _full(tls: TlsRedis, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**_env(tls, tmp_path, REDIS_URL=f"rediss://127.0.0.1:{tls.port}/0",
                   REDIS_TLS_CA=str(tls.ca), REDIS_TLS_CERT=str(tls.cert),
                   REDIS_TLS_KEY=str(tls.key)), **extra}


async def _ready(config) -> int:
    proxy = await start_proxy(config)
    try:
        return (await until_ready(proxy))["status"]
    finally:
        await proxy.stop()


async def _not_ready(config) -> dict:
    proxy = await start_proxy(config)
    # A refused TLS handshake, retried by the client, can take longer than a probe waits on
    # a loaded machine; these tests read the reason, so they wait for it.
    proxy.context.readiness.timeout = 10
    try:
        status, body, _ = await proxy.request("GET", "/readyz", headers=AUTH)
        assert status == 503
        return body
    finally:
        await proxy.stop()


@pytest_twisted.ensureDeferred
async def test_rediss_url_with_ca_and_client_certificate_serves_jobs(tls_redis, tmp_path):
    proxy = await start_proxy(load_config(_full(tls_redis, tmp_path)))
    try:
        status, added, _ = await proxy.request(
            "POST", "/queues/secure/jobs", json_body=[{"name": "a", "data": {"x": 1}}],
            headers=AUTH)
        assert status == 200
        status, job, _ = await proxy.request("GET", f"/queues/secure/jobs/{added[0]['id']}",
                                             headers=AUTH)
        assert status == 200
        assert job["data"] == {"x": 1}
        status, listed, _ = await proxy.request("GET", "/queues/secure/jobs", headers=AUTH)
        assert listed["counts"]["waiting"] == 1
        await until_ready(proxy)
    finally:
        await proxy.stop()


@pytest_twisted.ensureDeferred
async def test_redis_tls_flag_with_host_and_port_works_too(tls_redis, tmp_path):
    env = _env(tls_redis, tmp_path, REDIS_HOST="127.0.0.1", REDIS_PORT=str(tls_redis.port),
               REDIS_TLS="true", REDIS_TLS_CA=str(tls_redis.ca),
               REDIS_TLS_CERT=str(tls_redis.cert), REDIS_TLS_KEY=str(tls_redis.key))
    assert await _ready(load_config(env)) == "ok"


@pytest_twisted.ensureDeferred
async def test_server_signed_by_another_ca_is_refused(tls_redis, tmp_path):
    config = load_config(_full(tls_redis, tmp_path, REDIS_TLS_CA=str(tls_redis.other_ca)))
    body = await _not_ready(config)
    assert "certificate verify failed" in body["checks"]["redis"]


@pytest_twisted.ensureDeferred
async def test_missing_client_certificate_is_refused_by_the_server(tls_redis, tmp_path):
    env = _env(tls_redis, tmp_path, REDIS_URL=f"rediss://127.0.0.1:{tls_redis.port}/0",
               REDIS_TLS_CA=str(tls_redis.ca))
    body = await _not_ready(load_config(env))
    assert body["type"] == "/problems/redis-unavailable"


@pytest_twisted.ensureDeferred
async def test_plain_redis_url_cannot_talk_to_a_tls_port(tls_redis, tmp_path):
    env = _env(tls_redis, tmp_path, REDIS_URL=f"redis://127.0.0.1:{tls_redis.port}/0")
    assert (await _not_ready(load_config(env)))["checks"]["redis"] != "ok"


@pytest.mark.parametrize(("extra", "message"), [
    ({"REDIS_TLS_KEY": None}, "REDIS_TLS_CERT and REDIS_TLS_KEY must be set together"),
    ({"REDIS_TLS_CERT": None}, "REDIS_TLS_CERT and REDIS_TLS_KEY must be set together"),
    ({"REDIS_URL": "redis://127.0.0.1:1/0"}, "need TLS: use a rediss:// URL or REDIS_TLS"),
    ({"REDIS_TLS_CA": "/nonexistent/ca.pem"}, "REDIS_TLS_CA cannot be read"),
])
def test_inconsistent_tls_settings_are_refused(tls_redis, tmp_path, extra, message):
    env = {k: v for k, v in {**_full(tls_redis, tmp_path), **extra}.items() if v is not None}
    with pytest.raises(ConfigError, match=message):
        load_config(env)


def test_tls_file_option_is_named_when_unreadable(tmp_path):
    with pytest.raises(ConfigError, match="--redis-tls-cert cannot be read"):
        load_config({}, {"redis-tls-cert": str(tmp_path / "missing.pem")})
