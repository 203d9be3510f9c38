"""HTTP workers end to end: real Redis, a real endpoint server and a proxy on loopback."""

from __future__ import annotations

import pytest_twisted
from twisted.internet import task

from tests.support import AUTH, TOKEN, make_config
from tests.workers_helpers import (
    eventually,
    listen_endpoint,
    ok,
    post_json,
    start_live_proxy,
)

QUEUE = "{testQueue-e2e}"


@pytest_twisted.async_yield_fixture
async def live(redis_url):
    proxy = await start_live_proxy(make_config(redis_url, worker_stalled_interval=1000,
                                               worker_lock_duration=2000,
                                               worker_shutdown_grace=5.0))
    yield proxy
    await proxy.stop()


async def register(proxy, url, queue=QUEUE, **endpoint):
    body = {"queue": queue, "endpoint": {"url": url, "method": "POST", **endpoint}}
    opts = endpoint.pop("opts", None)
    if opts is not None:
        body["opts"] = opts
        del body["endpoint"]["opts"]
    status, text, headers = await proxy.request("POST", "/workers", json_body=body, headers=AUTH)
    assert (status, text) == (200, "OK"), text
    return headers


async def add_job(proxy, queue=QUEUE, **job):
    job = {"name": "test-job", "data": "test", **job}
    status, jobs, _ = await proxy.request("POST", f"/queues/{queue}/jobs", json_body=[job],
                                          headers=AUTH)
    assert status == 200, jobs
    return jobs[0]["id"]


async def job_state(proxy, job_id, queue=QUEUE):
    status, job, _ = await proxy.request("GET", f"/queues/{queue}/jobs/{job_id}", headers=AUTH)
    assert status == 200, job
    return job


async def finished(proxy, job_id, queue=QUEUE):
    async def check():
        job = await job_state(proxy, job_id, queue)
        return job if job["state"] in ("completed", "failed") else None

    return await eventually(check, what=f"job {job_id} to finish")


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
