"""Asynchronous completion: 202 keeps the job active until the endpoint settles it."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import task

from bullmq_proxy.errors import ProxyError
from bullmq_proxy.workers.settlement import _finishing
from tests.support import AUTH, aio, make_config, start_live_proxy
from tests.workers_helpers import (
    add_job,
    eventually,
    finished,
    job_state,
    listen_endpoint,
    ok,
    post_json,
    register,
)

CONFIG = {"worker_lock_duration": 1000, "worker_stalled_interval": 500}


@pytest_twisted.async_yield_fixture
async def live(redis_url):
    proxy = await start_live_proxy(make_config(redis_url, **CONFIG))
    yield proxy
    await proxy.stop()


def accepting():
    """An endpoint that answers 202 and remembers each job's id and token."""
    held = []

    async def handler(delivery):
        held.append((delivery.body["job"]["id"], delivery.body["token"]))
        return 202, {}, "accepted"

    return listen_endpoint(handler), held


def job_url(proxy, queue, job_id, action):
    return f"{proxy.base}/queues/{queue}/jobs/{job_id}/{action}"


async def pause(seconds):
    from twisted.internet import reactor

    await task.deferLater(reactor, seconds)


@pytest_twisted.ensureDeferred
async def test_accepted_job_stays_active_until_completed_through_the_api(live):
    endpoint, held = accepting()
    try:
        job_id = await add_job(live, "later")
        await register(live, endpoint.url, "later")
        await eventually(lambda: held, what="the call")
        await pause(1.5)  # longer than the lock: it must be renewed meanwhile
        assert (await job_state(live, job_id, "later"))["state"] == "active"
        _, token = held[0]
        answer = await post_json(job_url(live, "later", job_id, "complete"),
                                 {"returnvalue": {"sent": 3}}, token)
        assert answer == (200, "OK")
        job = await finished(live, job_id, "later")
        assert job["state"] == "completed"
        assert job["returnvalue"] == {"sent": 3}
        assert job["attemptsMade"] == 1
        await pause(1)
        assert len(held) == 1  # never handed out again
        # The lock is gone with the job: a second settlement is refused.
        status, _ = await post_json(job_url(live, "later", job_id, "complete"), {}, token)
        assert status == 401
    finally:
        await endpoint.close()


@pytest_twisted.ensureDeferred
async def test_fail_without_retry_and_with_retry(live):
    endpoint, held = accepting()
    try:
        await register(live, endpoint.url, "failing")
        final = await add_job(live, "failing", opts={"attempts": 3})
        await eventually(lambda: held, what="the first call")
        answer = await post_json(job_url(live, "failing", final, "fail"),
                                 {"reason": "invalid address", "retry": False}, held[0][1])
        assert answer == (200, "OK")
        job = await finished(live, final, "failing")
        assert (job["state"], job["failedReason"], job["attemptsMade"]) == (
            "failed", "invalid address", 1)

        again = await add_job(live, "failing", opts={"attempts": 2})
        await eventually(lambda: len(held) == 2, what="the second call")
        await post_json(job_url(live, "failing", again, "fail"), {"reason": "busy"}, held[1][1])
        await eventually(lambda: len(held) == 3, what="the retry")
        assert held[2][0] == again
        assert held[2][1] != held[1][1]
        await post_json(job_url(live, "failing", again, "complete"), {"returnvalue": "ok"},
                        held[2][1])
        job = await finished(live, again, "failing")
        assert (job["state"], job["returnvalue"], job["attemptsMade"]) == ("completed", "ok", 2)
    finally:
        await endpoint.close()


@pytest_twisted.ensureDeferred
async def test_deadline_fails_the_job_unless_extended(redis_url):
    live = await start_live_proxy(make_config(redis_url, **CONFIG))
    endpoint, held = accepting()
    try:
        await register(live, endpoint.url, "deadline", asyncTimeout=600)
        forgotten = await add_job(live, "deadline")
        job = await finished(live, forgotten, "deadline")
        assert job["state"] == "failed"
        assert job["failedReason"] == (
            "endpoint accepted the job (202) but did not settle it in time")

        extended = await add_job(live, "deadline")
        await eventually(lambda: len(held) == 2, what="the second call")
        assert await post_json(job_url(live, "deadline", extended, "lock"), {"duration": 3000},
                               held[1][1]) == (200, "OK")
        await pause(1.2)
        assert (await job_state(live, extended, "deadline"))["state"] == "active"
        await post_json(job_url(live, "deadline", extended, "complete"), {"returnvalue": 1},
                        held[1][1])
        job = await finished(live, extended, "deadline")
        assert (job["state"], job["returnvalue"]) == ("completed", 1)
    finally:
        await endpoint.close()
        await live.stop()


@pytest_twisted.ensureDeferred
async def test_another_instance_can_settle_the_job(live, redis_url):
    other = await start_live_proxy(make_config(redis_url, **CONFIG))
    endpoint, held = accepting()
    try:
        await register(live, endpoint.url, "shared")
        job_id = await add_job(live, "shared")
        holder = await eventually(
            lambda: next((p for p in (live, other)
                          if p.workers.settlements.holds("shared", job_id)), None),
            what="an instance to hold the job")
        # The settlement goes through the instance that does not hold the job.
        elsewhere = other if holder is live else live
        await post_json(job_url(elsewhere, "shared", job_id, "complete"), {"returnvalue": "x"},
                        held[0][1])
        job = await finished(live, job_id, "shared")
        assert (job["state"], job["returnvalue"]) == ("completed", "x")
        await pause(1)
        assert len(held) == 1
        running = [p.workers.workers["shared"].dispatcher.state for p in (live, other)]
        assert sum(state.in_flight for state in running) == 0
        assert sum(state.settled for state in running) == 1
        _, detail, _ = await holder.request("GET", "/workers/shared", headers=AUTH)
        assert detail["state"]["settled"] == 1
    finally:
        await endpoint.close()
        await other.stop()


@pytest_twisted.ensureDeferred
async def test_job_api_refuses_bad_bodies_and_wrong_tokens(live):
    endpoint, held = accepting()
    try:
        await register(live, endpoint.url, "strict")
        job_id = await add_job(live, "strict")
        await eventually(lambda: held, what="the call")
        token = held[0][1]
        cases = [
            ("fail", {}, "reason"),
            ("fail", {"reason": ""}, "reason"),
            ("fail", {"reason": "x", "retry": "no"}, "retry"),
            ("fail", {"reason": "x", "why": 1}, "why"),
            ("lock", {}, "duration"),
            ("lock", {"duration": 0}, "duration"),
            ("complete", {"returnvalue": 1, "extra": 2}, "extra"),
            ("complete", [1], "body"),
        ]
        for action, body, field in cases:
            status, _, _ = await live.request(
                "POST", f"/queues/strict/jobs/{job_id}/{action}", json_body=body,
                headers={"Authorization": f"Bearer {token}"})
            assert status == 400, (action, body)
            _, problem, _ = await live.request(
                "POST", f"/queues/strict/jobs/{job_id}/{action}", json_body=body,
                headers={"Authorization": f"Bearer {token}"})
            assert problem["field"] == field
        for action in ("complete", "fail", "lock"):
            status, _ = await post_json(job_url(live, "strict", job_id, action),
                                        {"reason": "x", "duration": 5}, "wrong")
            assert status == 401
        assert (await job_state(live, job_id, "strict"))["state"] == "active"
        await post_json(job_url(live, "strict", job_id, "complete"), {}, token)
        assert (await finished(live, job_id, "strict"))["returnvalue"] is None
    finally:
        await endpoint.close()


@pytest_twisted.ensureDeferred
async def test_scripts_refusing_a_settlement_is_a_conflict():
    async def refused():
        raise TypeError("Lock mismatch for job 1. Cmd moveToFinished from active")

    with pytest.raises(ProxyError) as caught:
        await aio(_finishing(refused()))
    assert caught.value.kind.status == 409


@pytest_twisted.ensureDeferred
async def test_ok_answer_still_completes_directly(live):
    endpoint = listen_endpoint(lambda delivery: _done())
    try:
        job_id = await add_job(live, "direct")
        await register(live, endpoint.url, "direct")
        assert (await finished(live, job_id, "direct"))["returnvalue"] == "done"
    finally:
        await endpoint.close()


async def _done():
    return ok("done")


@pytest_twisted.ensureDeferred
async def test_nothing_is_left_behind_in_redis(live, sync_redis):
    endpoint, held = accepting()
    try:
        await register(live, endpoint.url, "tidy")
        job_id = await add_job(live, "tidy")
        await eventually(lambda: held, what="the call")
        await eventually(lambda: sync_redis.exists(f"bull:tidy:{job_id}:proxy-deadline"),
                         what="the deadline")
        await post_json(job_url(live, "tidy", job_id, "complete"), {}, held[0][1])
        await finished(live, job_id, "tidy")
        await eventually(lambda: not sync_redis.exists(f"bull:tidy:{job_id}:proxy-deadline"),
                         what="the deadline to go")
    finally:
        await endpoint.close()
