"""The proxy killed (SIGKILL) during bulk adds: every add answered 2xx is in Redis whole, and
every other one is all or nothing, never half-written."""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from bullmq_proxy.redis.embedded import free_port
from tests.support import TOKEN
from tests.twistd_process import proxy_env, start_twistd

pytestmark = pytest.mark.slow
JOBS_PER_ADD = 1000
ADDS = 24


def _add(base: str, number: int) -> int | str:
    body = [{"name": "bulk", "data": {"add": number, "n": n},
             "opts": {"jobId": f"add{number}-job{n}"}} for n in range(JOBS_PER_ADD)]
    request = urllib.request.Request(
        f"{base}/queues/bulk/jobs", data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError as err:  # the proxy died under this request
        return type(err).__name__


def test_sigkill_during_bulk_adds_loses_no_acknowledged_job(redis_url, sync_redis, tmp_path):
    port = free_port()
    proxy = start_twistd([], proxy_env(REDIS_URL=redis_url, AUTH_TOKENS=TOKEN), tmp_path, port)
    answers: dict[int, int | str] = {}
    try:
        proxy.wait_ready()
        base = f"http://127.0.0.1:{port}"
        first_done = threading.Event()

        def add(number: int) -> None:
            answers[number] = _add(base, number)
            first_done.set()

        with ThreadPoolExecutor(8) as pool:
            for number in range(ADDS):
                pool.submit(add, number)
            assert first_done.wait(60), "no add was answered"
            time.sleep(0.05)
            proxy.process.send_signal(signal.SIGKILL)
    finally:
        proxy.stop()
    acknowledged = [n for n, status in answers.items() if status == 200]
    assert acknowledged, answers
    assert len(acknowledged) < ADDS, "the kill came after every add: nothing was tested"
    for number in range(ADDS):
        keys = [f"bull:bulk:add{number}-job{n}" for n in range(JOBS_PER_ADD)]
        present = sum(sync_redis.exists(*keys[i:i + 500]) for i in range(0, len(keys), 500))
        if number in acknowledged:
            assert present == JOBS_PER_ADD, (number, present)
        else:
            assert present in (0, JOBS_PER_ADD), (number, answers.get(number), present)
