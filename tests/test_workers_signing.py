"""Signed deliveries and the circuit breaker: units, the documented check, and end to end."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import pytest_twisted

from bullmq_proxy.config import ConfigError
from bullmq_proxy.errors import ProxyError
from bullmq_proxy.workers.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from bullmq_proxy.workers.signing import signature_headers, validate_secrets
from tests.support import AUTH, make_config, start_live_proxy, start_proxy
from tests.workers_helpers import (
    add_job,
    eventually,
    finished,
    job_state,
    listen_endpoint,
    ok,
    register,
)

SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
PLAIN_SECRET = "a-plain-text-secret-of-enough-length"


def documented_verify():
    """The verification function of docs/workers.md, exactly as documented."""
    doc = (Path(__file__).parent.parent / "docs" / "workers.md").read_text()
    (code,) = [block for block in re.findall(r"```python\n(.*?)```", doc, re.S)
               if "def verify" in block]
    namespace = {}
    exec(compile(code, "docs/workers.md", "exec"), namespace)
    return namespace["verify"]


def test_standard_webhooks_test_vector():
    headers = signature_headers([SPEC_SECRET], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                                b'{"test": 2432232314}')
    assert headers == {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }


def test_documented_check_accepts_each_rotated_secret_and_refuses_tampering():
    import time

    verify = documented_verify()
    now = int(time.time())
    body = b'{"job": {"id": "1"}, "token": "t"}'
    headers = signature_headers([PLAIN_SECRET, SPEC_SECRET], "mail:1", now, body)
    assert len(headers["webhook-signature"].split()) == 2
    assert verify(PLAIN_SECRET, headers, body)
    assert verify(SPEC_SECRET, headers, body)
    assert not verify("another-secret-that-is-long-enough", headers, body)
    assert not verify(SPEC_SECRET, headers, body + b" ")
    assert not verify(SPEC_SECRET, {**headers, "webhook-id": "mail:2"}, body)
    stale = signature_headers([SPEC_SECRET], "mail:1", now - 3600, body)
    assert not verify(SPEC_SECRET, stale, body)


@pytest.mark.parametrize("value", [
    "", "short", [], [PLAIN_SECRET, PLAIN_SECRET, PLAIN_SECRET], [1], "whsec_not*base64",
    {"a": 1}, "whsec_c2hvcnQ=",
])
def test_bad_secrets_are_refused(value):
    with pytest.raises(ProxyError) as caught:
        validate_secrets(value, "endpoint.signingSecret")
    assert caught.value.field == "endpoint.signingSecret"


def test_breaker_opens_probes_and_closes():
    now = [100.0]
    breaker = CircuitBreaker(lambda: now[0], threshold=3, base_window=10.0)
    for _ in range(2):
        assert breaker.allow()
        breaker.record(False)
    assert breaker.state == CLOSED
    breaker.record(True)  # a success resets the count
    for _ in range(3):
        breaker.record(False)
    assert breaker.state == OPEN
    assert not breaker.allow()
    assert breaker.retry_in() == 10.0
    now[0] += 10
    assert breaker.state == HALF_OPEN
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # only one at a time
    breaker.record(False)
    assert breaker.state == OPEN
    assert breaker.window == 20.0
    now[0] += 20
    assert breaker.allow()
    breaker.record(True)
    assert breaker.state == CLOSED
    assert breaker.allow()
    assert breaker.retry_in() == 0.0


def test_breaker_window_is_capped():
    now = [0.0]
    breaker = CircuitBreaker(lambda: now[0], threshold=1, base_window=200.0)
    breaker.record(False)
    now[0] += 200
    assert breaker.allow()
    breaker.record(False)
    assert breaker.window == 300.0


@pytest_twisted.ensureDeferred
async def test_signed_calls_verify_with_the_documented_check(redis_url):
    verify = documented_verify()
    live = await start_live_proxy(make_config(redis_url, worker_signing_secret=(SPEC_SECRET,)))
    seen = []

    async def handler(delivery):
        seen.append({secret: verify(secret, delivery.headers, delivery.raw)
                     for secret in (SPEC_SECRET, PLAIN_SECRET)})
        return ok("verified")

    endpoint = listen_endpoint(handler)
    try:
        job_id = await add_job(live, "signed-global")
        await register(live, endpoint.url, "signed-global")
        assert (await finished(live, job_id, "signed-global"))["returnvalue"] == "verified"
        job_id = await add_job(live, "signed-own")
        await register(live, endpoint.url, "signed-own", signingSecret=[PLAIN_SECRET])
        assert (await finished(live, job_id, "signed-own"))["returnvalue"] == "verified"
        assert seen == [{SPEC_SECRET: True, PLAIN_SECRET: False},
                        {SPEC_SECRET: False, PLAIN_SECRET: True}]
        assert endpoint.deliveries[1].headers["webhook-id"] == f"signed-own:{job_id}"
        _, detail, _ = await live.request("GET", "/workers/signed-own", headers=AUTH)
        assert detail["endpoint"]["signingSecret"] == "[redacted]"
        assert PLAIN_SECRET not in str(detail)
    finally:
        await endpoint.close()
        await live.stop()


@pytest_twisted.ensureDeferred
async def test_unsigned_calls_carry_no_signature(redis_url):
    live = await start_live_proxy(make_config(redis_url))
    endpoint = listen_endpoint(lambda delivery: _ok())
    try:
        job_id = await add_job(live, "unsigned")
        await register(live, endpoint.url, "unsigned")
        await finished(live, job_id, "unsigned")
        assert "webhook-signature" not in endpoint.deliveries[0].headers
    finally:
        await endpoint.close()
        await live.stop()


async def _ok():
    return ok("fine")


@pytest_twisted.ensureDeferred
async def test_a_bad_global_secret_stops_the_start(redis_url):
    with pytest.raises(ConfigError, match="WORKER_SIGNING_SECRET"):
        await start_proxy(make_config(redis_url, worker_signing_secret=("short",)))


@pytest_twisted.ensureDeferred
async def test_circuit_opens_after_failures_and_jobs_wait_without_spending_attempts(redis_url):
    live = await start_live_proxy(make_config(redis_url, worker_breaker_threshold=2,
                                              worker_breaker_window=1.0))
    healthy = []

    async def handler(delivery):
        return ok("up again") if healthy else (500, {}, "down")

    endpoint = listen_endpoint(handler)
    try:
        await register(live, endpoint.url, "flaky")
        first = [await add_job(live, "flaky") for _ in range(2)]
        for job_id in first:
            assert (await finished(live, job_id, "flaky"))["state"] == "failed"
        _, detail, _ = await live.request("GET", "/workers/flaky", headers=AUTH)
        assert detail["state"]["circuit"]["state"] == "open"
        assert detail["state"]["circuit"]["failures"] == 2
        assert 0 < detail["state"]["circuit"]["retryIn"] <= 1.0

        waiting = await add_job(live, "flaky", opts={"attempts": 1})
        job = await eventually(lambda: _delayed(live, waiting), what="job held back")
        assert job["attemptsMade"] == 0
        assert len(endpoint.deliveries) == 2  # no call while the circuit is open
        healthy.append(True)
        job = await finished(live, waiting, "flaky")
        assert job["state"] == "completed"
        assert job["returnvalue"] == "up again"
        _, detail, _ = await live.request("GET", "/workers/flaky", headers=AUTH)
        assert detail["state"]["circuit"] == {"state": "closed", "failures": 0, "retryIn": 0.0}
    finally:
        await endpoint.close()
        await live.stop()


async def _delayed(live, job_id):
    job = await job_state(live, job_id, "flaky")
    return job if job["state"] == "delayed" else None
