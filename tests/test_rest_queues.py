"""The REST queue API against a real Redis, through the real resource tree (StubTreq)."""

from __future__ import annotations

import pytest
import pytest_twisted
from bullmq import Queue

from tests.support import AUTH, aio


@pytest_twisted.ensureDeferred
async def test_banner_is_public(proxy):
    status, body, _ = await proxy.request("GET", "/")
    assert status == 200
    assert body.startswith("BullMQ Proxy")


@pytest_twisted.ensureDeferred
async def test_add_jobs_returns_them_and_stores_them(proxy, sync_redis):
    jobs = [
        {"name": "zero", "data": 0},
        {"name": "false", "data": False},
        {"name": "null", "data": None},
        {"name": "empty", "data": ""},
        {"name": "obj", "data": {"a": [1, 2]},
         "opts": {"priority": 5, "attempts": 3, "backoff": {"type": "fixed", "delay": 10}}},
    ]
    status, body, headers = await proxy.request("POST", "/queues/mail/jobs", json_body=jobs,
                                                headers=AUTH)
    assert status == 200
    assert headers.getRawHeaders("content-type") == ["application/json; charset=utf-8"]
    assert [job["name"] for job in body] == ["zero", "false", "null", "empty", "obj"]
    assert [job["data"] for job in body] == [0, False, None, "", {"a": [1, 2]}]
    assert body[4]["opts"]["priority"] == 5
    assert sync_redis.hget("bull:mail:1", "name") == "zero"
    assert sync_redis.hget("bull:mail:3", "data") == "null"
    assert sync_redis.llen("bull:mail:wait") == 4
    assert sync_redis.zcard("bull:mail:prioritized") == 1


@pytest_twisted.ensureDeferred
async def test_get_job_reads_back_with_state(proxy):
    await proxy.request("POST", "/queues/mail/jobs",
                        json_body=[{"name": "a", "data": {"x": 1}}], headers=AUTH)
    status, job, _ = await proxy.request("GET", "/queues/mail/jobs/1", headers=AUTH)
    assert status == 200
    assert job["id"] == "1"
    assert job["data"] == {"x": 1}
    assert job["state"] == "waiting"
    assert job["attemptsMade"] == 0


@pytest_twisted.ensureDeferred
async def test_unknown_job_is_404_json(proxy):
    status, body, headers = await proxy.request("GET", "/queues/mail/jobs/nope", headers=AUTH)
    assert status == 404
    assert body["type"] == "/problems/not-found"
    assert body["field"] == "jobId"
    assert headers.getRawHeaders("content-type") == ["application/problem+json"]


@pytest_twisted.ensureDeferred
async def test_list_jobs_with_counts_and_paging(proxy):
    jobs = [{"name": f"j{i}", "data": i} for i in range(15)]
    await proxy.request("POST", "/queues/mail/jobs", json_body=jobs, headers=AUTH)
    status, body, _ = await proxy.request(
        "GET", "/queues/mail/jobs?start=10&length=10&statuses=waiting,delayed", headers=AUTH)
    assert status == 200
    assert body["counts"] == {"waiting": 15, "delayed": 0}
    assert body["start"] == 10
    assert body["length"] == 10
    assert len(body["jobs"]) == 5


@pytest_twisted.ensureDeferred
async def test_list_defaults(proxy):
    status, body, _ = await proxy.request("GET", "/queues/mail/jobs", headers=AUTH)
    assert status == 200
    assert set(body["counts"]) == {"waiting", "active", "completed", "failed"}
    assert body["start"] == 0
    assert body["length"] == 10


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("length=101", "length"),
        ("length=0", "length"),
        ("start=-1", "start"),
        ("start=abc", "start"),
        ("statuses=waiting,bogus", "statuses"),
        ("statuses=,", "statuses"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_list_rejects_bad_paging(proxy, query, field):
    status, body, _ = await proxy.request("GET", f"/queues/mail/jobs?{query}", headers=AUTH)
    assert status == 400
    assert body["field"] == field


@pytest_twisted.ensureDeferred
async def test_repeat_job_creates_a_scheduler(proxy, sync_redis):
    status, body, _ = await proxy.request(
        "POST", "/queues/mail/jobs",
        json_body=[{"name": "tick", "data": {"n": 1}, "opts": {"repeat": {"every": 60000}}},
                   {"name": "once", "data": 1}],
        headers=AUTH)
    assert status == 200
    assert body[0]["name"] == "tick"
    assert body[0]["opts"]["repeat"]["every"] == 60000
    assert body[1]["name"] == "once"
    assert sync_redis.zcard("bull:mail:repeat") == 1


@pytest_twisted.ensureDeferred
async def test_queue_names_are_decoded_and_may_hold_hash_tags_and_unicode(proxy, sync_redis):
    for encoded, name in [("%7Bmail%7D", "{mail}"), ("my%20queue", "my queue"),
                          ("caf%C3%A9s", "cafés")]:
        status, _, _ = await proxy.request("POST", f"/queues/{encoded}/jobs",
                                           json_body=[{"name": "a", "data": 1}], headers=AUTH)
        assert status == 200
        assert sync_redis.hget(f"bull:{name}:1", "name") == "a"


@pytest.mark.parametrize(
    ("path", "detail"),
    [("/queues/ab/jobs", "at least 3"), ("/queues/" + "x" * 101 + "/jobs", "at most 100"),
     ("/queues/a%3Ab/jobs", "':'")],
)
@pytest_twisted.ensureDeferred
async def test_bad_queue_names(proxy, path, detail):
    status, body, _ = await proxy.request("POST", path, json_body=[], headers=AUTH)
    assert status == 400
    assert body["field"] == "queueName"
    assert detail in body["detail"]


@pytest_twisted.ensureDeferred
async def test_job_logs_paging(proxy):
    await proxy.request("POST", "/queues/mail/jobs", json_body=[{"name": "a", "data": 1}],
                        headers=AUTH)
    queue = proxy.context.queues.get("mail")
    for line in ("one", "two", "three"):
        await aio(queue.backend.addLog("1", line))
    status, body, _ = await proxy.request("GET", "/queues/mail/jobs/1/logs?start=1&length=5",
                                          headers=AUTH)
    assert status == 200
    assert body == {"logs": ["two", "three"], "count": 3}


@pytest_twisted.ensureDeferred
async def test_jobs_added_here_are_processed_by_a_bullmq_worker(proxy, redis_url):
    from bullmq import Worker

    await proxy.request("POST", "/queues/compat/jobs",
                        json_body=[{"name": "sum", "data": {"a": 2, "b": 3}}], headers=AUTH)

    async def process(job, token):
        return job.data["a"] + job.data["b"]

    worker = Worker("compat", process, {"connection": redis_url, "prefix": "bull"})
    try:
        job = None
        for _ in range(1000):  # a Worker starting on a loaded machine
            _status, job, _ = await proxy.request("GET", "/queues/compat/jobs/1", headers=AUTH)
            if job["state"] == "completed":
                break
            await aio(__import__("asyncio").sleep(0.02))
        assert job["state"] == "completed"
        assert job["returnvalue"] == 5
        assert job["finishedOn"] is not None
    finally:
        await aio(worker.close())


@pytest_twisted.ensureDeferred
async def test_jobs_added_by_bullmq_read_back(proxy, redis_url):
    queue = Queue("native", {"connection": redis_url})
    try:
        await aio(queue.add("native-job", {"k": "v"}, {"attempts": 2}))
    finally:
        await aio(queue.close())
    status, job, _ = await proxy.request("GET", "/queues/native/jobs/1", headers=AUTH)
    assert status == 200
    assert job["name"] == "native-job"
    assert job["data"] == {"k": "v"}
    assert job["opts"]["attempts"] == 2
