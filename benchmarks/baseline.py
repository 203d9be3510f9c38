"""The no-proxy baselines: Python ``bullmq`` straight against Redis, in a process of its own.

``python -m benchmarks.baseline add|bulk|worker|fetch-next REDIS_URL QUEUE N`` prints one JSON
object. ``fetch-next`` is not a baseline but the proxy's own worker loop with a no-op processor:
what the loop and Redis can do when no endpoint is called.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from typing import Any

from bullmq import Queue, Worker

from bullmq_proxy.config import RedisSettings
from bullmq_proxy.workers.connections import WorkerConnections
from bullmq_proxy.workers.fetch_next import FetchNextWorker

JOB_DATA = {"n": 1, "text": "hello"}
BULK = 100


async def add_one_at_a_time(url: str, queue_name: str, count: int) -> dict[str, Any]:
    queue = Queue(queue_name, {"connection": url})
    started = time.perf_counter()
    for _ in range(count):
        await queue.add("bench", JOB_DATA)
    elapsed = time.perf_counter() - started
    await queue.close()
    return {"jobs": count, "seconds": elapsed}


async def add_in_bulks(url: str, queue_name: str, count: int) -> dict[str, Any]:
    queue = Queue(queue_name, {"connection": url})
    started = time.perf_counter()
    for offset in range(0, count, BULK):
        size = min(BULK, count - offset)
        await queue.addBulk([{"name": "bench", "data": JOB_DATA}] * size)
    elapsed = time.perf_counter() - started
    await queue.close()
    return {"jobs": count, "seconds": elapsed}


async def process_all(url: str, queue_name: str, count: int,
                      start: Any = None) -> dict[str, Any]:
    """Time a no-op worker (concurrency 100; bullmq's unless ``start`` builds another) to
    complete ``count`` waiting jobs."""
    queue = Queue(queue_name, {"connection": url})
    done = asyncio.get_running_loop().create_future()
    completed = 0

    async def noop(job: Any, token: str) -> str:
        return "done"

    started = time.perf_counter()
    opts = {"connection": url, "concurrency": 100}
    worker = Worker(queue_name, noop, opts) if start is None else start(queue_name, noop, opts)

    def on_completed(*_: Any) -> None:
        nonlocal completed
        completed += 1
        if completed >= count and not done.done():
            done.set_result(None)

    worker.on("completed", on_completed)
    try:
        await asyncio.wait_for(done, timeout=300)
    finally:
        elapsed = time.perf_counter() - started
        await worker.close(force=True)
        await queue.close()
    return {"jobs": completed, "seconds": elapsed}


async def process_all_fetching_next(url: str, queue_name: str, count: int) -> dict[str, Any]:
    # On the Redis connections the proxy gives its workers, to measure the loop as it runs.
    connections = WorkerConnections(RedisSettings(url=url), "bull")

    def start(name: str, processor: Any, opts: dict[str, Any]) -> FetchNextWorker:
        return FetchNextWorker(name, processor, {"concurrency": opts["concurrency"]},
                               connections)

    try:
        return await process_all(url, queue_name, count, start)
    finally:
        await connections.close()


MODES = {"add": add_one_at_a_time, "bulk": add_in_bulks, "worker": process_all,
         "fetch-next": process_all_fetching_next}


def main() -> None:
    mode, url, queue_name, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    result = asyncio.run(MODES[mode](url, queue_name, count))
    own = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_s"] = own.ru_utime + own.ru_stime
    result["peak_rss_mb"] = own.ru_maxrss / 1024
    print(json.dumps(result))


if __name__ == "__main__":
    main()
