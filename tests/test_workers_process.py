"""Real ``twistd`` processes: SIGKILL mid-call loses no job and completes none twice;
SIGTERM lets the call in flight finish."""

from __future__ import annotations

import signal

import pytest
import pytest_twisted
from twisted.internet import defer

from bullmq_proxy.redis.embedded import free_port
from tests.support import TOKEN
from tests.twistd_process import proxy_env, start_twistd
from tests.workers_helpers import eventually, listen_endpoint, ok

# Real twistd processes, installs or packaging steps: part of the slow subset.
pytestmark = pytest.mark.slow


def completed_events(sync_redis, queue, job_id):
    return [fields for _, fields in sync_redis.xrange(f"bull:{queue}:events")
            if fields.get("event") == "completed" and fields.get("jobId") == job_id]


@pytest_twisted.ensureDeferred
async def test_job_of_a_killed_proxy_completes_exactly_once_elsewhere(
        redis_url, sync_redis, tmp_path):
    never = defer.Deferred()

    async def handler(delivery):
        if len(endpoint.deliveries) == 1:
            await never  # the first call hangs until its proxy is gone
        return ok("done")

    endpoint = listen_endpoint(handler)
    env = proxy_env(REDIS_URL=redis_url, AUTH_TOKENS=TOKEN, WORKER_LOCK_DURATION="1000",
                    WORKER_STALLED_INTERVAL="500")
    first = start_twistd([], env, tmp_path, free_port())
    second = None
    try:
        first.wait_ready()
        registration = {"queue": "durable", "endpoint": {"url": endpoint.url, "method": "POST",
                                                         "timeout": 60000}}
        assert first.request("POST", "/workers", registration, TOKEN) == (200, "OK")
        status, jobs = first.request("POST", "/queues/durable/jobs",
                                     [{"name": "work", "data": {"n": 1}}], TOKEN)
        assert status == 200
        job_id = jobs[0]["id"]
        await eventually(lambda: endpoint.deliveries, what="the first call")
        assert sync_redis.lrange("bull:durable:active", 0, -1) == [job_id]

        first.stop(signal.SIGKILL)
        second = start_twistd([], env, tmp_path, free_port())
        second.wait_ready()
        await eventually(lambda: sync_redis.zscore("bull:durable:completed", job_id) is not None,
                         what="the job to complete on the second proxy")
        await eventually(lambda: completed_events(sync_redis, "durable", job_id),
                         what="the completed event")
        # Time for a duplicate to show up, had the job been handed out twice.
        await _pause(1.5)
        job = sync_redis.hgetall(f"bull:durable:{job_id}")
        assert job["returnvalue"] == '"done"'
        assert job["atm"] == "1"
        assert job["stc"] == "1"
        assert len(completed_events(sync_redis, "durable", job_id)) == 1
        assert len(endpoint.deliveries) == 2
        assert sync_redis.llen("bull:durable:active") == 0
        assert sync_redis.zcard("bull:durable:failed") == 0
    finally:
        never.callback(None)
        for proxy in (first, second):
            if proxy is not None:
                proxy.stop(signal.SIGKILL)
        await endpoint.close()


@pytest_twisted.ensureDeferred
async def test_sigterm_lets_the_call_in_flight_finish(redis_url, sync_redis, tmp_path):
    answered = []

    async def handler(delivery):
        await _pause(1.0)
        answered.append(True)
        return ok("finished while stopping")

    endpoint = listen_endpoint(handler)
    env = proxy_env(REDIS_URL=redis_url, AUTH_TOKENS=TOKEN, WORKER_SHUTDOWN_GRACE="20")
    proxy = start_twistd([], env, tmp_path, free_port())
    try:
        proxy.wait_ready()
        registration = {"queue": "stopping", "endpoint": {"url": endpoint.url,
                                                          "method": "POST"}}
        assert proxy.request("POST", "/workers", registration, TOKEN) == (200, "OK")
        _, jobs = proxy.request("POST", "/queues/stopping/jobs", [{"name": "w", "data": 1}],
                                TOKEN)
        await eventually(lambda: endpoint.deliveries, what="the call")
        proxy.process.send_signal(signal.SIGTERM)
        await eventually(lambda: proxy.process.poll() is not None, what="twistd to exit")
        assert answered == [True]
        assert sync_redis.hget(f"bull:stopping:{jobs[0]['id']}", "returnvalue") == (
            '"finished while stopping"')
        assert "Workers closed" in proxy.output()
        assert "Traceback" not in proxy.output()
    finally:
        proxy.stop(signal.SIGKILL)
        await endpoint.close()


async def _pause(seconds):
    from twisted.internet import reactor, task

    await task.deferLater(reactor, seconds)
