"""Pull workers: take the next job over HTTP, settle it with its token; long polls; a job
whose lock runs out runs again; pull and push share a queue without doubles."""

from __future__ import annotations

import asyncio
import json

import pytest_twisted
from bullmq import Queue
from twisted.internet import defer

from tests.support import AUTH, aio, make_config, start_live_proxy
from tests.workers_helpers import eventually, listen_endpoint, ok, register

Q = "pulled"


@pytest_twisted.async_yield_fixture
async def live(redis_url):
    proxy = await start_live_proxy(make_config(redis_url, worker_stalled_interval=500))
    yield proxy
    await proxy.stop()


async def add(live, count=1, **opts):
    status, jobs, _ = await live.request(
        "POST", f"/queues/{Q}/jobs",
        json_body=[{"name": "n", "data": {"n": n}, "opts": opts} for n in range(count)],
        headers=AUTH)
    assert status == 200, jobs
    return [job["id"] for job in jobs]


async def pull(live, **body):
    return await live.request("POST", f"/queues/{Q}/jobs/next", json_body=body, headers=AUTH)


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest_twisted.ensureDeferred
async def test_a_pulled_job_is_active_under_a_random_token_and_completes(live, sync_redis):
    (job_id,) = await add(live)
    status, taken, _ = await pull(live)
    assert status == 200
    assert (taken["job"]["id"], taken["job"]["state"]) == (job_id, "active")
    assert len(taken["token"]) == 32
    assert sync_redis.get(f"bull:{Q}:{job_id}:lock") == taken["token"]
    path = f"/queues/{Q}/jobs/{job_id}"
    assert (await live.request("POST", path + "/progress", json_body=50,
                               headers=bearer(taken["token"])))[0] == 200
    assert (await live.request("POST", path + "/complete", json_body={"returnvalue": "done"},
                               headers=bearer("0" * 32)))[0] == 401
    assert (await live.request("POST", path + "/complete", json_body={"returnvalue": "done"},
                               headers=bearer(taken["token"])))[0] == 200
    status, job, _ = await live.request("GET", path, headers=AUTH)
    assert (job["state"], job["returnvalue"], job["progress"]) == ("completed", "done", 50)


@pytest_twisted.ensureDeferred
async def test_nothing_to_take_is_204_at_once_or_after_the_wait(live):
    status, _, _ = await pull(live)
    assert status == 204
    started = asyncio.get_running_loop().time()
    status, _, _ = await pull(live, wait=300)
    assert status == 204
    assert asyncio.get_running_loop().time() - started >= 0.29


@pytest_twisted.ensureDeferred
async def test_a_long_poll_gets_the_job_added_while_it_waits(live):
    waiting = defer.ensureDeferred(pull(live, wait=5000))
    await aio(asyncio.sleep(0.3))
    (job_id,) = await add(live)
    status, taken, _ = await waiting
    assert (status, taken["job"]["id"]) == (200, job_id)


@pytest_twisted.ensureDeferred
async def test_a_job_never_answered_runs_again_after_its_lock_runs_out(live, sync_redis):
    (job_id,) = await add(live, attempts=1)
    status, first, _ = await pull(live, lockDuration=300)
    assert status == 200

    async def taken_again():
        status, second, _ = await pull(live)
        return second if status == 200 else None

    second = await eventually(taken_again, timeout=10, what="the stalled job to come back")
    assert second["job"]["id"] == job_id
    assert second["token"] != first["token"]
    assert second["job"]["stalledCounter"] == 1
    # The first client lost the job: its token settles nothing.
    status, _, _ = await live.request("POST", f"/queues/{Q}/jobs/{job_id}/complete",
                                      json_body={}, headers=bearer(first["token"]))
    assert status == 401


@pytest_twisted.ensureDeferred
async def test_lock_extends_a_pulled_job(live, sync_redis):
    (job_id,) = await add(live)
    _, taken, _ = await pull(live, lockDuration=1000)
    status, _, _ = await live.request("POST", f"/queues/{Q}/jobs/{job_id}/lock",
                                      json_body={"duration": 60_000},
                                      headers=bearer(taken["token"]))
    assert status == 200
    assert sync_redis.pttl(f"bull:{Q}:{job_id}:lock") > 50_000


@pytest_twisted.ensureDeferred
async def test_pull_and_push_share_the_queue_without_doubles(live, sync_redis):
    async def answer(delivery):
        return ok(json.dumps({"by": "push"}), "application/json")

    endpoint = listen_endpoint(answer)
    try:
        ids = await add(live, 40)
        await register(live, endpoint.url, queue=Q)
        pulled = []
        while sync_redis.zcard(f"bull:{Q}:completed") + len(pulled) < 40:
            status, taken, _ = await pull(live)
            if status == 200:
                pulled.append(taken["job"]["id"])
                await live.request("POST", f"/queues/{Q}/jobs/{taken['job']['id']}/complete",
                                   json_body={"returnvalue": "pulled"},
                                   headers=bearer(taken["token"]))
            else:
                await aio(asyncio.sleep(0.05))
        await eventually(lambda: sync_redis.zcard(f"bull:{Q}:completed") == 40,
                         what="every job done")
        pushed = [d.body["job"]["id"] for d in endpoint.deliveries]
        assert sorted(pushed + pulled) == sorted(ids)
        assert not set(pushed) & set(pulled)
    finally:
        await endpoint.close()


@pytest_twisted.ensureDeferred
async def test_bad_pulls_are_refused_and_take_nothing(live, sync_redis):
    await add(live)
    for body, field in (({"wait": 30_001}, "wait"), ({"lockDuration": 0}, "lockDuration"),
                        ({"name": "n"}, "name"), ({"other": 1}, "other")):
        status, problem, _ = await pull(live, **body)
        assert (status, problem["field"]) == (400, field)
    assert sync_redis.llen(f"bull:{Q}:active") == 0
    assert (await live.request("POST", f"/queues/{Q}/jobs/next", json_body={}))[0] == 401


@pytest_twisted.ensureDeferred
async def test_a_scheduler_keeps_producing_for_pull_clients(live, redis_url):
    queue = Queue(Q, {"connection": redis_url})
    try:
        await aio(queue.upsertJobScheduler("tick", {"every": 200}, "tick", {}))
    finally:
        await aio(queue.close())
    seen = []
    for _ in range(3):
        status, taken, _ = await pull(live, wait=3000)
        assert status == 200
        seen.append(taken["job"]["id"])
        await live.request("POST", f"/queues/{Q}/jobs/{taken['job']['id']}/complete",
                           json_body={}, headers=bearer(taken["token"]))
    assert len(set(seen)) == 3


@pytest_twisted.ensureDeferred
async def test_tokens_handed_to_endpoints_are_random_128_bits(live, sync_redis):
    async def answer(delivery):
        return ok("done")

    endpoint = listen_endpoint(answer)
    try:
        await register(live, endpoint.url, queue=Q, opts={"concurrency": 3})
        await add(live, 3)
        await eventually(lambda: sync_redis.zcard(f"bull:{Q}:completed") == 3,
                         what="the jobs done")
        tokens = {d.body["token"] for d in endpoint.deliveries}
        assert all(len(token) == 32 and int(token, 16) >= 0 for token in tokens)
        assert not any(":" in token for token in tokens)
    finally:
        await endpoint.close()


@pytest_twisted.ensureDeferred
async def test_add_and_wait_answers_the_finished_job_or_202(live):
    async def answer(delivery):
        if delivery.body["job"]["data"].get("fail"):
            return 500, {}, b"no luck"
        if delivery.body["job"]["data"].get("slow"):
            from twisted.internet import reactor, task
            await task.deferLater(reactor, 1.0)
        return ok(json.dumps({"echo": delivery.body["job"]["data"]}), "application/json")

    endpoint = listen_endpoint(answer)
    try:
        await register(live, endpoint.url, queue=Q)
        path = f"/queues/{Q}/jobs?wait=5000"
        status, job, _ = await live.request("POST", path,
                                            json_body=[{"name": "n", "data": {"x": 1}}],
                                            headers=AUTH)
        assert (status, job["state"], job["returnvalue"]) == (200, "completed",
                                                              {"echo": {"x": 1}})
        status, problem, _ = await live.request("POST", path,
                                                json_body=[{"name": "n", "data": {"fail": 1}}],
                                                headers=AUTH)
        assert (status, problem["type"], problem["job"]["state"]) == (
            502, "/problems/job-failed", "failed")
        status, accepted, headers = await live.request(
            "POST", f"/queues/{Q}/jobs?wait=100", json_body=[{"name": "n",
                                                              "data": {"slow": 1}}],
            headers=AUTH)
        assert status == 202
        assert headers.getRawHeaders("location") == [accepted["url"]]
        assert accepted["url"] == f"/queues/{Q}/jobs/{accepted['id']}"
        for body, field in (([{"name": "a", "data": 1}, {"name": "b", "data": 2}], "wait"),):
            status, problem, _ = await live.request("POST", path, json_body=body,
                                                    headers=AUTH)
            assert (status, problem["field"]) == (400, field)
        status, problem, _ = await live.request("POST", f"/queues/{Q}/jobs?wait=30001",
                                                json_body=[{"name": "a", "data": 1}],
                                                headers=AUTH)
        assert (status, problem["field"]) == (400, "wait")
    finally:
        await endpoint.close()
