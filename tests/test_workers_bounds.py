"""Worker registrations and the jobs workers run, at and past their bounds (issue 11): a
registration out of range is a 400 and stored nowhere; one already in Redis is skipped and
reported, and leaves the instance up, ready and the other queues running; options at the top
of their ranges still run; cron schedules produce jobs."""

from __future__ import annotations

import json

import pytest
import pytest_twisted

from bullmq_proxy.bounds import MAX_DELAY_MS, MAX_STORED_INTEGER, MAX_TIMESTAMP_MS
from bullmq_proxy.redis.embedded import free_port
from tests.probes import until_ready
from tests.support import AUTH, make_config, start_live_proxy
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

URL = "http://127.0.0.1:9/hook"


def registration(queue="mail", opts=None, **endpoint):
    body = {"queue": queue, "endpoint": {"url": URL, "method": "POST", **endpoint}}
    if opts is not None:
        body["opts"] = opts
    return body


@pytest_twisted.async_yield_fixture
async def live(redis_url):
    running = await start_live_proxy(make_config(redis_url, worker_max_slots=10))
    yield running
    await running.stop()


async def answer_ok(delivery):
    return ok()


@pytest_twisted.async_yield_fixture
async def serve(redis_url):
    """``await serve(handler)``: an endpoint answering with ``handler`` and a proxy on a real
    port, both closed after the test."""
    started = []

    async def start(handler=answer_ok):
        endpoint = listen_endpoint(handler)
        proxy = await start_live_proxy(make_config(redis_url))
        started.append((proxy, endpoint))
        return proxy, endpoint

    yield start
    for proxy, endpoint in started:
        await proxy.stop()
        await endpoint.close()


@pytest.mark.parametrize(("body", "field"), [
    (b'{"queue": "mail", "endpoint": {"url": "http://a.test/", "method": "POST"}, '
     b'"opts": {"concurrency": 100000000000000000000}}', "opts.concurrency"),
    (registration(opts={"concurrency": 2**64}), "opts.concurrency"),
    (registration(opts={"concurrency": 1001}), "opts.concurrency"),
    (registration(opts={"concurrency": 0}), "opts.concurrency"),
    (registration(opts={"limiter": {"max": 1e20, "duration": 1000}}), "opts.limiter.max"),
    (registration(opts={"limiter": {"max": 10, "duration": 10**20}}), "opts.limiter.duration"),
    (registration(opts={"removeOnComplete": 10**20}), "opts.removeOnComplete"),
    (registration(opts={"removeOnFail": {"age": 2**64}}), "opts.removeOnFail.age"),
    (registration(opts={"maxStalledCount": 2**64}), "opts.maxStalledCount"),
    (registration(asyncTimeout=10**29), "endpoint.asyncTimeout"),
    (registration(timeout=3_600_001), "endpoint.timeout"),
    (registration(url="http://user:secret@a.test/hook"), "endpoint.url"),
    (registration(url="http://a.test/hook\x00"), "endpoint.url"),
    (registration(url="http://a.test/\u00e9"), "endpoint.url"),
    # urlsplit takes it; the HTTP client's URL parser does not, so no call could be made.
    (registration(url="http://[::1]a/hook"), "endpoint.url"),
    (registration(headers={"X-Key": "a\x00b"}), "endpoint.headers.X-Key"),
    (b'{"queue": "mail", "endpoint": {"url": "http://a.test/", "method": "POST", '
     b'"timeout": 1e400}}', "body"),
])
@pytest_twisted.ensureDeferred
async def test_registrations_past_their_ranges_are_400_and_stored_nowhere(
        live, sync_redis, body, field):
    status, problem, _ = await live.request(
        "POST", "/workers", body=body if isinstance(body, bytes) else None,
        json_body=None if isinstance(body, bytes) else body, headers=AUTH)
    assert status == 400, problem
    assert problem["field"] == field
    assert sync_redis.hlen("bmqp:w:meta") == 0
    assert sync_redis.xlen("bmpq:w:stream") == 0


@pytest_twisted.ensureDeferred
async def test_a_registration_past_the_instance_slots_is_400(live, sync_redis):
    await register(live, URL, queue="first", opts={"concurrency": 6})
    status, problem, _ = await live.request(
        "POST", "/workers", json_body=registration("second", {"concurrency": 5}), headers=AUTH)
    assert (status, problem["field"]) == (400, "opts.concurrency")
    assert "WORKER_MAX_SLOTS" in problem["detail"]
    assert sync_redis.hkeys("bmqp:w:meta") == ["first"]
    # A queue's own slots do not count against it: it may grow up to the whole instance.
    await register(live, URL, queue="first", opts={"concurrency": 10})


POISONED = {
    "{poison}-huge": json.dumps(registration("{poison}-huge"))[:-1]
    + ', "opts": {"concurrency": 100000000000000000000}}',
    "{poison}-limiter": json.dumps(registration("{poison}-limiter",
                                                {"limiter": {"max": 1e20, "duration": 1e20}})),
    "{poison}-deep": '{"queue": ' + "[" * 5000 + "]" * 5000 + "}",
    "{poison}-list": "[]",
    "{poison}-text": "not json",
}


@pytest_twisted.ensureDeferred
async def test_a_poisoned_registration_leaves_the_instance_up_ready_and_the_others_running(
        redis_url, sync_redis):
    async def handler(delivery):
        return ok(b'{"done": true}', "application/json")

    endpoint = listen_endpoint(handler)
    sync_redis.hset("bmqp:w:meta", mapping=POISONED)
    sync_redis.hset("bmqp:w:meta", QUEUE, json.dumps({
        "queue": QUEUE, "endpoint": {"url": endpoint.url, "method": "POST"}}))
    proxy = await start_live_proxy(make_config(redis_url))
    try:
        ready = await until_ready(proxy)
        assert ready["warnings"]["workers"].startswith("5 registered worker(s) not run")
        job_id = await add_job(proxy)
        assert (await finished(proxy, job_id))["returnvalue"] == {"done": True}
        workers = proxy.workers
        assert set(workers.workers) == {QUEUE}
        assert set(workers.refused) == set(POISONED)
        assert "opts.concurrency" in workers.refused["{poison}-huge"]
        status, shown, _ = await proxy.request("GET", "/workers/%7Bpoison%7D-huge", headers=AUTH)
        assert status == 200
        assert shown["state"]["running"] is False
        assert shown["state"]["refused"].startswith("opts.concurrency must be an integer")
        status, shown, _ = await proxy.request("GET", "/workers/%7Bpoison%7D-list", headers=AUTH)
        assert (status, shown["unreadable"]) == (200, "not a JSON object")
        status, listed, _ = await proxy.request("GET", "/workers", headers=AUTH)
        assert status == 200
        assert listed["{poison}-deep"] is None
        status, text, _ = await proxy.request("GET", "/metrics", headers=AUTH)
        assert 'bullmq_proxy_workers_refused{queue="{poison}-huge"} 1.0' in text
        # Registered properly through the API, the queue runs and is no longer reported.
        await register(proxy, endpoint.url, queue="{poison}-huge")
        await eventually(lambda: "{poison}-huge" in workers.workers)
        assert "{poison}-huge" not in workers.refused
        # Removed, it is forgotten.
        sync_redis.hdel("bmqp:w:meta", "{poison}-list")
        await proxy.request("DELETE", "/workers/%7Bpoison%7D-text", headers=AUTH)
        await eventually(lambda: "{poison}-text" not in workers.refused)
    finally:
        await proxy.stop()
        await endpoint.close()


TOP_OF_EVERY_RANGE = {
    "attempts": MAX_STORED_INTEGER, "removeOnComplete": MAX_STORED_INTEGER,
    "removeOnFail": {"age": MAX_DELAY_MS // 1000, "count": MAX_STORED_INTEGER},
    "keepLogs": MAX_STORED_INTEGER, "stackTraceLimit": MAX_STORED_INTEGER,
    "sizeLimit": MAX_STORED_INTEGER, "priority": 2_097_152,
    "backoff": {"type": "exponential", "delay": MAX_DELAY_MS},
    "deduplication": {"id": "top", "ttl": MAX_DELAY_MS},
}


@pytest_twisted.ensureDeferred
async def test_every_option_at_the_top_of_its_range_still_runs(serve, sync_redis):
    answers = [ok(b'"first"', "application/json"), (500, {}, b"second fails")]

    async def handler(delivery):
        return answers.pop(0)

    proxy, endpoint = await serve(handler)
    await register(proxy, endpoint.url, timeout=3_600_000, asyncTimeout=7 * 86_400_000,
                   opts={"removeOnComplete": MAX_STORED_INTEGER, "maxStalledCount":
                         MAX_STORED_INTEGER, "removeOnFail": {"age": MAX_DELAY_MS // 1000,
                                                            "count": MAX_STORED_INTEGER},
                         "limiter": {"max": MAX_STORED_INTEGER,
                                     "duration": MAX_DELAY_MS}})
    first = await add_job(proxy, opts=TOP_OF_EVERY_RANGE)
    assert (await finished(proxy, first))["returnvalue"] == "first"
    second = await add_job(proxy, opts={**TOP_OF_EVERY_RANGE, "deduplication": {
        "id": "other"}})

    async def retried():
        job = await job_state(proxy, second)
        return job if job["state"] == "delayed" and job["attemptsMade"] == 1 else None

    job = await eventually(retried, what="the failed attempt to be retried later")
    assert job["failedReason"] == "endpoint answered 500: second fails"
    later = await add_job(proxy, opts={"delay": MAX_DELAY_MS,
                                       "timestamp": MAX_TIMESTAMP_MS - MAX_DELAY_MS})
    assert (await job_state(proxy, later))["state"] == "delayed"
    assert len(endpoint.deliveries) == 2


@pytest_twisted.ensureDeferred
async def test_an_answer_that_cannot_be_stored_is_not_retried(serve):
    async def handler(delivery):
        return ok(b'{"total": 1e400}', "application/json")

    proxy, endpoint = await serve(handler)
    await register(proxy, endpoint.url)
    job_id = await add_job(proxy, opts={"attempts": 3})
    job = await finished(proxy, job_id)
    assert job["state"] == "failed"
    assert job["failedReason"].startswith(
        "endpoint answered 200 with JSON the proxy cannot store")
    assert len(endpoint.deliveries) == 1


@pytest_twisted.ensureDeferred
async def test_a_connection_error_is_a_sentence_in_failed_reason(redis_url):
    proxy = await start_live_proxy(make_config(redis_url))
    try:
        await register(proxy, f"http://127.0.0.1:{free_port()}/hook")
        job = await finished(proxy, await add_job(proxy, opts={"attempts": 1}))
        assert job["failedReason"].startswith("endpoint call failed: ")
        assert "Failure" not in job["failedReason"]
        assert "<" not in job["failedReason"]
    finally:
        await proxy.stop()


@pytest_twisted.ensureDeferred
async def test_logs_from_an_endpoint_keep_the_jobs_keep_logs(serve, sync_redis):
    async def handler(delivery):
        call = delivery.body
        base = f"{proxy.base}/queues/%7BtestQueue-e2e%7D/jobs/{call['job']['id']}/logs"
        for n in range(3):
            assert await post_json(base, f"line {n}", call["token"]) == (200, "OK")
        return ok()

    proxy, endpoint = await serve(handler)
    await register(proxy, endpoint.url)
    job_id = await add_job(proxy, opts={"keepLogs": 2})
    await finished(proxy, job_id)
    assert sync_redis.lrange(f"bull:{QUEUE}:{job_id}:logs", 0, -1) == ["line 1", "line 2"]


@pytest_twisted.ensureDeferred
async def test_a_cron_schedule_produces_jobs(serve, sync_redis):
    proxy, endpoint = await serve()
    await register(proxy, endpoint.url)
    # Six fields, seconds first: every second.
    await add_job(proxy, name="tick", data={"n": 1}, opts={"repeat": {
        "pattern": "* * * * * *", "tz": "Europe/Paris", "key": "ticker"}})
    await eventually(lambda: len({d.body["job"]["id"] for d in endpoint.deliveries}) >= 3,
                     what="three runs of the schedule")
    jobs = [d.body["job"] for d in endpoint.deliveries]
    assert {job["name"] for job in jobs} == {"tick"}
    assert {json.dumps(job["data"]) for job in jobs} == {'{"n": 1}'}
    assert sync_redis.zrange(f"bull:{QUEUE}:repeat", 0, -1) == ["ticker"]
    assert sync_redis.hget(f"bull:{QUEUE}:repeat:ticker", "pattern") == "* * * * * *"


@pytest_twisted.ensureDeferred
async def test_a_worker_that_keeps_failing_backs_off_and_shows_it(serve):
    import redis.exceptions

    proxy, endpoint = await serve()
    await register(proxy, endpoint.url)
    await eventually(lambda: QUEUE in proxy.workers.workers)
    worker = proxy.workers.workers[QUEUE].worker
    fetches = []

    async def refusing(token, opts):
        fetches.append(token)
        raise redis.exceptions.ResponseError("OOM command not allowed when used memory "
                                             "> 'maxmemory'.")

    # Every take of a job fails until the real one is back.
    real, worker.backend.moveToActive = worker.backend.moveToActive, refusing
    first = await add_job(proxy)
    await eventually(lambda: len(fetches) >= 3, what="three failed fetches")
    status, shown, _ = await proxy.request("GET", f"/workers/{QUEUE}", headers=AUTH)
    assert status == 200
    state = shown["state"]
    assert state["running"] is True
    assert state["workerErrors"] >= 3
    assert state["lastWorkerError"].startswith("ResponseError: OOM command not allowed")
    ready = await until_ready(proxy)
    assert "1 worker(s) hit errors in the last minute" in ready["warnings"]["workers"]
    _, text, _ = await proxy.request("GET", "/metrics", headers=AUTH)
    assert f'bullmq_proxy_worker_errors_total{{queue="{QUEUE}"}}' in text
    # bullmq alone tries again every 0.1 s; backing off (0.5 s, then doubling) it is a
    # few tries in the time bullmq makes ten.
    count = len(fetches)
    from twisted.internet import reactor, task
    await task.deferLater(reactor, 1.0)
    assert len(fetches) - count <= 3
    worker.backend.moveToActive = real
    assert (await finished(proxy, first))["state"] == "completed"
    assert worker.fetch_failures == 0
