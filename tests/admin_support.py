"""Helpers for the tests of queue, job, flow and scheduler management over REST.

The tests run on asyncio (``ws_support.on_asyncio``) so that bullmq workers, Node apps and
REST calls mix freely; ``rest`` drives the proxy's resource tree from there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import redis
from bullmq import Job, Worker
from twisted.internet import defer

from bullmq_proxy.bridge import as_future
from tests.support import TOKEN

QUEUE = "mail"
# Where a job of each REST state lives in Redis (BullMQ 6's layout).
STATE_KEYS = {"waiting": "wait", "active": "active", "delayed": "delayed",
              "prioritized": "prioritized", "completed": "completed", "failed": "failed",
              "waiting-children": "waiting-children"}


def on_twisted(coroutine: Any) -> Any:
    """A Twisted coroutine (the proxy's test client) awaited from an asyncio test."""
    return as_future(defer.ensureDeferred(coroutine))


async def rest(proxy: Any, method: str, path: str, body: Any = None, *, status: int = 200,
               raw: bytes | None = None, token: str | None = TOKEN) -> Any:
    """The decoded answer of one request, which must have ``status``."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    code, answer, _ = await on_twisted(proxy.request(method, path, json_body=body, body=raw,
                                                     headers=headers))
    assert status is None or code == status, (method, path, code, answer)
    return answer


def assert_problem(answer: Any, slug: str, field: str | None) -> None:
    assert answer["type"] == f"/problems/{slug}", answer
    assert answer.get("field") == field, answer
    assert answer["detail"]


async def until(check: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    """Poll ``check`` (plain or async) until it answers something true."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def overlapping(spans: list[tuple[float, float]]) -> bool:
    """Whether, of these (start, end) runs, one started before an earlier one had ended."""
    ended = float("-inf")
    for start, end in sorted(spans):
        if start < ended:
            return True
        ended = max(ended, end)
    return False


def snapshot(client: redis.Redis) -> dict[str, bytes | None]:
    """Every key of Redis with its serialized value: equal snapshots, unchanged data."""
    return {key: client.dump(key) for key in sorted(client.keys("*"))}


def where(client: redis.Redis, job_id: str, queue: str = QUEUE) -> list[str]:
    """The state lists and sets of ``queue`` that hold ``job_id``."""
    found = []
    for name in ("wait", "paused", "active"):
        if job_id in client.lrange(f"bull:{queue}:{name}", 0, -1):
            found.append(name)
    for name in ("delayed", "prioritized", "completed", "failed", "waiting-children"):
        if client.zscore(f"bull:{queue}:{name}", job_id) is not None:
            found.append(name)
    return found


async def add(proxy: Any, *jobs: dict[str, Any], queue: str = QUEUE) -> list[str]:
    """Add ``{name, data, opts}`` jobs over REST; their ids."""
    added = await rest(proxy, "POST", f"/queues/{queue}/jobs",
                       [{"name": "job", "data": {}, **job} for job in jobs])
    return [job["id"] for job in added]


async def jobs_in(proxy: Any, redis_url: str, client: redis.Redis, state: str, count: int = 1
                  ) -> list[str]:
    """``count`` jobs of queue mail in ``state`` (any but active), made as users make them:
    added over REST, run by a bullmq worker, or parents of a flow."""
    if state == "waiting-children":
        flows = await rest(proxy, "POST", "/flows", [
            {"name": "parent", "queueName": QUEUE, "data": {},
             "children": [{"name": "child", "queueName": "kids", "data": {}}]}
            for _ in range(count)])
        return [flow["job"]["id"] for flow in flows]
    opts = {"delayed": {"delay": 600_000}, "prioritized": {"priority": 2}}.get(state, {})
    data = {"fail": True} if state == "failed" else {}
    ids = await add(proxy, *({"data": data, "opts": opts} for _ in range(count)))
    if state in ("completed", "failed"):
        await finish(redis_url, client, ids)
    return ids


async def _process(job: Job, token: str) -> Any:
    if job.data.get("fail"):
        raise RuntimeError("failed on purpose")
    return {"done": job.id}


async def finish(redis_url: str, client: redis.Redis, ids: list[str], queue: str = QUEUE
                 ) -> None:
    """Run the waiting jobs ``ids`` to their end with a bullmq worker: a job whose data has
    ``fail`` fails (for good without ``attempts``), any other completes."""
    worker = Worker(queue, _process, {"connection": redis_url, "prefix": "bull"})
    try:
        await until(lambda: all({"completed", "failed"} & set(where(client, i, queue))
                                for i in ids), f"jobs {ids} to finish")
    finally:
        await worker.close()


@contextlib.asynccontextmanager
async def held_active(redis_url: str, client: redis.Redis, queue: str = QUEUE
                      ) -> AsyncIterator[str]:
    """A bullmq worker holds the next job of ``queue`` active, under its lock, until the
    block ends; then the job completes."""
    taken: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    release = asyncio.Event()

    async def hold(job: Job, token: str) -> Any:
        if not taken.done():
            taken.set_result(job.id)
        await release.wait()
        return {"held": True}

    worker = Worker(queue, hold, {"connection": redis_url, "prefix": "bull"})
    try:
        job_id = await asyncio.wait_for(taken, 20)
        assert client.get(f"bull:{queue}:{job_id}:lock"), "the held job has no lock"
        yield job_id
    finally:
        release.set()
        await worker.close()
