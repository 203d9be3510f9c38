"""HTTP workers end to end: real Redis, a real endpoint server and a proxy on loopback."""

from __future__ import annotations

import pytest_twisted
from twisted.internet import task

from tests.support import AUTH, TOKEN, make_config, start_live_proxy
from tests.workers_helpers import (
    QUEUE,
    add_job,
    eventually,
    finished,
    job_state,
    listen_endpoint,
    ok,
    post_json,
    register,
)


@pytest_twisted.async_yield_fixture
async def live(redis_url):
    proxy = await start_live_proxy(make_config(redis_url, worker_stalled_interval=1000,
                                               worker_lock_duration=2000,
                                               worker_shutdown_grace=5.0))
    yield proxy
    await proxy.stop()


@pytest_twisted.ensureDeferred
async def test_original_e2e_scenario_progress_log_and_text_return(live):
    base = live.base

    async def handler(delivery):
        job, token = delivery.body["job"], delivery.body["token"]
        assert job["name"] == "test-job"
        assert job["data"] == "test"
        assert "opts" in job
        jobs = f"{base}/queues/{QUEUE.replace('{', '%7B').replace('}', '%7D')}/jobs/{job['id']}"
        assert await post_json(jobs + "/progress", 100, token) == (200, "OK")
        assert await post_json(jobs + "/logs", "log message", token) == (200, "OK")
        return ok("foo bar")

    endpoint = listen_endpoint(handler)
    try:
        job_id = await add_job(live)
        await register(live, endpoint.url, headers={"Content-Type": "application/json"})
        job = await finished(live, job_id)
        assert job["state"] == "completed", job
        assert job["returnvalue"] == "foo bar"
        assert job["progress"] == 100
        status, logs, _ = await live.request(
            "GET", f"/queues/{QUEUE}/jobs/{job_id}/logs", headers=AUTH)
        assert status == 200
        assert logs == {"logs": ["log message"], "count": 1}
        assert len(endpoint.deliveries) == 1
    finally:
        await endpoint.close()


@pytest_twisted.ensureDeferred
async def test_json_answer_is_the_return_value_and_headers_are_sent(live):
    async def handler(delivery):
        return ok(b'{"sum": 3, "ok": true}', "application/json; charset=utf-8")

    endpoint = listen_endpoint(handler)
    try:
        job_id = await add_job(live, data={"a": 1, "b": 2})
        await register(live, endpoint.url, method="put", headers={"X-Custom": "yes"})
        job = await finished(live, job_id)
        assert job["state"] == "completed", job
        assert job["returnvalue"] == {"sum": 3, "ok": True}
        (delivery,) = endpoint.deliveries
        assert delivery.method == "PUT"
        assert delivery.headers["x-custom"] == "yes"
        assert delivery.headers["content-type"] == "application/json"
        assert delivery.headers["bullmq-proxy-job-id"] == job_id
        assert delivery.headers["bullmq-proxy-attempt"] == "1"
        assert delivery.headers["idempotency-key"] == f"{QUEUE}:{job_id}"
        body = delivery.body
        assert set(body) == {"job", "token"}
        assert body["job"]["id"] == job_id
        assert body["job"]["data"] == {"a": 1, "b": 2}
        assert body["token"]
    finally:
        await endpoint.close()


@pytest_twisted.ensureDeferred
async def test_wrong_or_missing_lock_token_is_401(live):
    from twisted.internet import reactor

    answers = []

    async def handler(delivery):
        job = delivery.body["job"]
        url = f"{live.base}/queues/jobsq/jobs/{job['id']}/progress"
        answers.append(await post_json(url, 50, "not-the-token"))
        answers.append(await post_json(url, 50, TOKEN))  # the API token is not a lock token
        return ok("done")

    endpoint = listen_endpoint(handler)
    try:
        job_id = await add_job(live, "jobsq")
        await register(live, endpoint.url, "jobsq")
        job = await finished(live, job_id, "jobsq")
        assert job["state"] == "completed"
        assert job["progress"] == 0
        assert [status for status, _ in answers] == [401, 401]
        await task.deferLater(reactor, 0)
    finally:
        await endpoint.close()


@pytest_twisted.ensureDeferred
async def test_failures_are_retried_with_backoff_then_fail_with_the_reason(live):
    async def handler(delivery):
        return 500, {"Content-Type": "text/plain"}, "database down"

    endpoint = listen_endpoint(handler)
    try:
        job_id = await add_job(live, "retries",
                               opts={"attempts": 3, "backoff": {"type": "fixed", "delay": 50}})
        await register(live, endpoint.url, "retries")
        job = await finished(live, job_id, "retries")
        assert job["state"] == "failed"
        assert job["attemptsMade"] == 3
        assert job["failedReason"] == "endpoint answered 500: database down"
        attempts = [d.headers["bullmq-proxy-attempt"] for d in endpoint.deliveries]
        assert attempts == ["1", "2", "3"]
        assert {d.headers["idempotency-key"] for d in endpoint.deliveries} == {
            f"retries:{job_id}"}
        _, detail, _ = await live.request("GET", "/workers/retries", headers=AUTH)
        assert detail["state"]["failed"] == 3
        assert detail["state"]["lastError"] == "endpoint answered 500: database down"
    finally:
        await endpoint.close()


@pytest_twisted.ensureDeferred
async def test_a_slow_endpoint_times_out_and_the_next_attempt_succeeds(live):
    from twisted.internet import reactor

    async def handler(delivery):
        if delivery.headers["bullmq-proxy-attempt"] == "1":
            await task.deferLater(reactor, 1.0)
        return ok("second time")

    endpoint = listen_endpoint(handler)
    try:
        job_id = await add_job(live, "slow", opts={"attempts": 2})
        await register(live, endpoint.url, "slow", timeout=200)
        job = await finished(live, job_id, "slow")
        assert job["state"] == "completed"
        assert job["returnvalue"] == "second time"
        assert job["attemptsMade"] == 2
        assert len(endpoint.deliveries) == 2
    finally:
        await endpoint.close()


@pytest_twisted.ensureDeferred
async def test_timeout_and_connection_errors_give_clear_reasons(live):
    from twisted.internet import reactor

    async def handler(delivery):
        await task.deferLater(reactor, 1.0)
        return ok()

    endpoint = listen_endpoint(handler)
    url = endpoint.url
    try:
        slow_id = await add_job(live, "slowq")
        await register(live, endpoint.url, "slowq", timeout=150)
        job = await finished(live, slow_id, "slowq")
        assert job["failedReason"] == "endpoint did not answer within 150 ms"
    finally:
        await endpoint.close()
    refused_id = await add_job(live, "refused")
    await register(live, url, "refused")  # closed above: nothing listens there
    job = await finished(live, refused_id, "refused")
    assert job["state"] == "failed"
    assert job["failedReason"].startswith("endpoint call failed: ")
    assert "refused" in job["failedReason"].lower()


@pytest_twisted.ensureDeferred
async def test_client_errors_fail_without_spending_the_remaining_attempts(live):
    async def handler(delivery):
        return 422, {"Content-Type": "application/json"}, '{"error": "bad input"}'

    endpoint = listen_endpoint(handler)
    try:
        job_id = await add_job(live, "unrec", opts={"attempts": 5})
        await register(live, endpoint.url, "unrec")
        job = await finished(live, job_id, "unrec")
        assert job["state"] == "failed"
        assert job["attemptsMade"] == 1
        assert job["failedReason"] == 'endpoint answered 422: {"error": "bad input"}'
        assert len(endpoint.deliveries) == 1
    finally:
        await endpoint.close()


@pytest_twisted.ensureDeferred
async def test_throttling_delays_without_spending_an_attempt(live):
    async def handler(delivery):
        if len(endpoint.deliveries) == 1:
            return 429, {"Retry-After": "1"}, "slow down"
        if len(endpoint.deliveries) == 2:
            return 500, {"BullMQ-Proxy-Retry": "after=100"}, "later please"
        return ok("finally")

    endpoint = listen_endpoint(handler)
    try:
        job_id = await add_job(live, "throttled", opts={"attempts": 1})
        await register(live, endpoint.url, "throttled")
        await eventually(lambda: len(endpoint.deliveries) == 1, what="first call")
        job = await eventually(
            lambda: _state_is(live, job_id, "throttled", "delayed"), what="job to be delayed")
        assert job["attemptsMade"] == 0
        job = await finished(live, job_id, "throttled")
        assert job["state"] == "completed", job
        assert job["returnvalue"] == "finally"
        assert job["attemptsMade"] == 1
        assert [d.headers["bullmq-proxy-attempt"] for d in endpoint.deliveries] == ["1"] * 3
    finally:
        await endpoint.close()


@pytest_twisted.ensureDeferred
async def test_never_header_fails_at_once(live):
    async def handler(delivery):
        return 503, {"BullMQ-Proxy-Retry": "never", "Retry-After": "5"}, "gone for good"

    endpoint = listen_endpoint(handler)
    try:
        job_id = await add_job(live, "never", opts={"attempts": 4})
        await register(live, endpoint.url, "never")
        job = await finished(live, job_id, "never")
        assert job["state"] == "failed"
        assert job["attemptsMade"] == 1
        assert job["failedReason"] == (
            "endpoint answered 503: gone for good (the endpoint asked not to retry)")
    finally:
        await endpoint.close()


async def _state_is(proxy, job_id, queue, state):
    job = await job_state(proxy, job_id, queue)
    return job if job["state"] == state else None


@pytest_twisted.ensureDeferred
async def test_replacing_a_worker_moves_new_jobs_to_the_new_endpoint_and_delete_stops(live):
    async def old(delivery):
        return ok("old")

    async def new(delivery):
        return ok("new")

    first, second = listen_endpoint(old), listen_endpoint(new)
    try:
        await register(live, first.url, "moving")
        job_id = await add_job(live, "moving")
        assert (await finished(live, job_id, "moving"))["returnvalue"] == "old"
        await register(live, second.url, "moving")
        await eventually(lambda: live.workers.workers["moving"].metadata.endpoint.url
                         == second.url, what="replacement")
        # The replaced worker finishes what it took, so wait for it to be gone.
        await eventually(lambda: not live.workers._closing, what="old worker closed")
        job_id = await add_job(live, "moving")
        assert (await finished(live, job_id, "moving"))["returnvalue"] == "new"
        await live.request("DELETE", "/workers/moving", headers=AUTH)
        await eventually(lambda: "moving" not in live.workers.workers, what="worker stop")
        await eventually(lambda: not live.workers._closing, what="worker closed")
        job_id = await add_job(live, "moving")
        await _pause(0.5)
        assert (await job_state(live, job_id, "moving"))["state"] == "waiting"
        assert len(first.deliveries) == len(second.deliveries) == 1
    finally:
        await first.close()
        await second.close()


async def _pause(seconds):
    from twisted.internet import reactor

    await task.deferLater(reactor, seconds)


@pytest_twisted.ensureDeferred
async def test_stopping_lets_in_flight_calls_finish(redis_url):
    proxy = await start_live_proxy(make_config(redis_url, worker_shutdown_grace=10.0))
    stopped = False
    try:
        async def handler(delivery):
            await _pause(0.8)
            return ok("finished in time")

        endpoint = listen_endpoint(handler)
        job_id = await add_job(proxy, "graceful")
        await register(proxy, endpoint.url, "graceful")
        await eventually(lambda: endpoint.deliveries, what="call in flight")
        await proxy.stop()
        stopped = True
        later = await start_live_proxy(make_config(redis_url))
        try:
            job = await job_state(later, job_id, "graceful")
            assert job["state"] == "completed"
            assert job["returnvalue"] == "finished in time"
        finally:
            await later.stop()
        await endpoint.close()
    finally:
        if not stopped:
            await proxy.stop()


@pytest_twisted.ensureDeferred
async def test_calls_past_the_grace_period_are_left_to_the_stalled_check(redis_url, sync_redis):
    config = make_config(redis_url, worker_shutdown_grace=0.2, worker_lock_duration=1000,
                         worker_stalled_interval=500)
    proxy = await start_live_proxy(config)
    stopped = False

    async def handler(delivery):
        if len(endpoint.deliveries) == 1:
            await _pause(3)
        return ok(f"call {len(endpoint.deliveries)}")

    endpoint = listen_endpoint(handler)
    try:
        job_id = await add_job(proxy, "cutoff")
        await register(proxy, endpoint.url, "cutoff")
        await eventually(lambda: endpoint.deliveries, what="call in flight")
        await proxy.stop()
        stopped = True
        # Still active (not failed): its lock expires and the next instance recovers it.
        assert sync_redis.lrange("bull:cutoff:active", 0, -1) == [job_id]
        later = await start_live_proxy(config)
        try:
            job = await finished(later, job_id, "cutoff")
            assert job["state"] == "completed"
            assert job["returnvalue"] == "call 2"
            assert job["attemptsMade"] == 1
            assert job["stalledCounter"] == 1
        finally:
            await later.stop()
    finally:
        if not stopped:
            await proxy.stop()
        await endpoint.close()


@pytest_twisted.ensureDeferred
async def test_concurrency_bounds_the_calls_in_flight(live):
    from twisted.internet import defer

    release = defer.Deferred()

    async def handler(delivery):
        await release
        return ok("released")

    endpoint = listen_endpoint(handler)
    try:
        ids = [await add_job(live, "parallel") for _ in range(5)]
        await register(live, endpoint.url, "parallel", opts={"concurrency": 3})
        await eventually(lambda: len(endpoint.deliveries) == 3, what="three calls")
        await _pause(0.3)
        assert len(endpoint.deliveries) == 3
        _, detail, _ = await live.request("GET", "/workers/parallel", headers=AUTH)
        assert detail["state"]["inFlight"] == 3
        release.callback(None)
        for job_id in ids:
            assert (await finished(live, job_id, "parallel"))["returnvalue"] == "released"
        assert len(endpoint.deliveries) == 5
    finally:
        await endpoint.close()


@pytest_twisted.ensureDeferred
async def test_limiter_reaches_bullmq(live, sync_redis):
    endpoint = listen_endpoint(lambda delivery: _answer("limited"))
    try:
        first = await add_job(live, "limited")
        await register(live, endpoint.url, "limited",
                       opts={"limiter": {"max": 1, "duration": 60000}})
        assert (await finished(live, first, "limited"))["state"] == "completed"
        second = await add_job(live, "limited")
        # BullMQ's rate limiter holds the second job for the rest of the minute.
        assert 0 < sync_redis.pttl("bull:limited:limiter") <= 60000
        await _pause(0.5)
        assert (await job_state(live, second, "limited"))["state"] in ("waiting", "delayed")
        assert len(endpoint.deliveries) == 1
    finally:
        await endpoint.close()


async def _answer(text):
    return ok(text)


@pytest_twisted.ensureDeferred
async def test_an_endpoint_at_an_ipv6_literal_is_called_with_its_bracketed_host(live):
    from twisted.internet import reactor
    from twisted.web.server import Site

    from tests.workers_helpers import EndpointResource

    async def handler(delivery):
        return ok("six")

    resource = EndpointResource(handler)
    port = reactor.listenTCP(0, Site(resource), interface="::1")
    try:
        job_id = await add_job(live, "six")
        await register(live, f"http://[::1]:{port.getHost().port}/hook", "six")
        job = await finished(live, job_id, "six")
        assert (job["state"], job["returnvalue"]) == ("completed", "six"), job
        (delivery,) = resource.deliveries
        assert delivery.headers["host"] == f"[::1]:{port.getHost().port}"
    finally:
        await port.stopListening()
