"""Liveness and readiness probes against a real Redis, and against a Redis that is not there."""

from __future__ import annotations

import asyncio

import pytest
import pytest_twisted

from bullmq_proxy.health import Readiness
from bullmq_proxy.redis.embedded import free_port
from tests.probes import until_ready
from tests.support import AUTH, aio, make_config, start_proxy


@pytest_twisted.async_yield_fixture
async def proxy_without_redis():
    # Nothing listens on a port just found free, so every connection is refused.
    running = await start_proxy(make_config(f"redis://127.0.0.1:{free_port()}/0"))
    yield running
    await running.stop()


@pytest_twisted.ensureDeferred
async def test_healthz_is_public_and_ok(proxy):
    status, body, headers = await proxy.request("GET", "/healthz")
    assert status == 200
    assert body == {"status": "ok"}
    assert headers.getRawHeaders("content-type") == ["application/json; charset=utf-8"]


@pytest_twisted.ensureDeferred
async def test_healthz_answers_even_without_redis(proxy_without_redis):
    status, body, _ = await proxy_without_redis.request("GET", "/healthz")
    assert status == 200
    assert body == {"status": "ok"}


@pytest_twisted.ensureDeferred
async def test_readyz_is_public_and_reports_each_check(proxy):
    body = await until_ready(proxy)
    assert body == {"status": "ok",
                    "checks": {"redis": "ok", "workers": "ok", "shutdown": "ok"}}


@pytest_twisted.ensureDeferred
async def test_readyz_is_503_problem_when_redis_is_down(proxy_without_redis):
    status, body, headers = await proxy_without_redis.request("GET", "/readyz", headers=AUTH)
    assert status == 503
    assert headers.getRawHeaders("content-type") == ["application/problem+json"]
    assert headers.getRawHeaders("retry-after") == ["1"]
    assert body["type"] == "/problems/redis-unavailable"
    assert body["instance"] == "/readyz"
    assert body["checks"]["redis"] != "ok"
    assert body["checks"]["workers"] == "the worker registry is not loaded yet"
    assert "redis:" in body["detail"]


@pytest_twisted.ensureDeferred
async def test_registered_check_failing_makes_readyz_503_with_its_reason(proxy):
    async def registry_loaded() -> str | None:
        return "worker registry not loaded yet"

    await until_ready(proxy)
    proxy.context.readiness.add("registry", registry_loaded)
    status, body, _ = await proxy.request("GET", "/readyz", headers=AUTH)
    assert status == 503
    assert body["type"] == "/problems/not-ready"
    assert body["checks"] == {"redis": "ok", "workers": "ok", "shutdown": "ok",
                              "registry": "worker registry not loaded yet"}
    assert "worker registry not loaded yet" in body["detail"]


@pytest_twisted.ensureDeferred
async def test_registered_check_passing_keeps_readyz_200(proxy):
    async def registry_loaded() -> str | None:
        return None

    proxy.context.readiness.add("registry", registry_loaded)
    body = await until_ready(proxy)
    assert body["checks"] == {"redis": "ok", "workers": "ok", "shutdown": "ok",
                              "registry": "ok"}


@pytest_twisted.ensureDeferred
async def test_check_that_hangs_is_reported_as_timed_out(redis_url):
    proxy = await start_proxy(make_config(redis_url))
    try:
        readiness = Readiness(proxy.context.redis, timeout=1.0)

        async def hangs() -> str | None:
            await asyncio.sleep(30)
            return None

        async def crashes() -> str | None:
            raise RuntimeError("boom")

        readiness.add("slow", hangs)
        readiness.add("broken", crashes)
        checks = await aio(readiness.run())
        assert checks == {
            "redis": "ok", "slow": "no answer within 1s", "broken": "RuntimeError: boom",
        }
    finally:
        await proxy.stop()


def test_check_names_are_unique():
    readiness = Readiness(None)  # type: ignore[arg-type]

    async def check() -> str | None:
        return None

    readiness.add("workers", check)
    with pytest.raises(ValueError, match="workers"):
        readiness.add("workers", check)
    with pytest.raises(ValueError, match="redis"):
        readiness.add("redis", check)


@pytest_twisted.ensureDeferred
async def test_probes_refuse_other_methods(proxy):
    status, body, headers = await proxy.request("POST", "/healthz", body=b"{}")
    assert status == 405
    assert headers.getRawHeaders("allow") == ["GET"]
    assert body["type"] == "/problems/method-not-allowed"


@pytest_twisted.ensureDeferred
async def test_without_a_token_readyz_names_the_failing_checks_but_not_why(
        proxy_without_redis):
    status, body, _ = await proxy_without_redis.request("GET", "/readyz")
    assert status == 503
    assert body["checks"] == {"redis": "failing", "workers": "failing", "shutdown": "ok"}
    assert "127.0.0.1" not in str(body)
    assert "a token shows why" in body["detail"]
