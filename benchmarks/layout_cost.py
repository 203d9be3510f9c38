"""What the layout prelude (redis/layout.py) costs Redis and the proxy per job.

Adds N jobs with ``Queue.addBulk`` and runs them with the proxy's fetch-next worker loop (a
no-op processor), once with ``BULLMQ_LAYOUT=6`` (bullmq's scripts untouched) and once with
``auto`` (every script behind the prelude), alternating, in one run on one private Redis.
Prints Redis CPU (INFO cpu) and this process's CPU per job for each phase.

    .venv/bin/python -m benchmarks.layout_cost --jobs 20000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time

import redis.asyncio as aredis

from bullmq_proxy.queues import QueueRegistry
from bullmq_proxy.redis.embedded import free_port
from bullmq_proxy.workers.fetch_next import FetchNextWorker
from tests.redis_process import start_redis


async def redis_cpu(client: aredis.Redis) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def measure(url: str, layout: str, queue_name: str, jobs: int) -> dict[str, float]:
    client = aredis.Redis.from_url(url, decode_responses=True)
    registry = QueueRegistry(client, "bull", 10, layout)
    queue = registry.get(queue_name)
    figures: dict[str, float] = {}
    redis_before, own_before = await redis_cpu(client), time.process_time()
    for first in range(0, jobs, 500):
        await queue.addBulk([{"name": "n", "data": {"i": i}}
                             for i in range(first, min(jobs, first + 500))])
    figures["add_redis_ms"] = (await redis_cpu(client) - redis_before) * 1000 / jobs
    figures["add_proxy_ms"] = (time.process_time() - own_before) * 1000 / jobs

    async def noop(job: object, token: str) -> str:
        return "ok"

    worker_client = aredis.Redis.from_url(url, decode_responses=True)
    redis_before, own_before = await redis_cpu(client), time.process_time()
    worker = FetchNextWorker(queue_name, noop, {"connection": worker_client,
                                                "concurrency": 50}, layout)
    while await client.zcard(f"bull:{queue_name}:completed") < jobs:
        await asyncio.sleep(0.01)
    figures["process_redis_ms"] = (await redis_cpu(client) - redis_before) * 1000 / jobs
    figures["process_proxy_ms"] = (time.process_time() - own_before) * 1000 / jobs
    await worker.close()
    with contextlib.suppress(Exception):
        await worker_client.aclose()
    await client.aclose()
    return figures


async def main(jobs: int, rounds: int) -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        process = start_redis(port, data_dir)
        try:
            url = f"redis://127.0.0.1:{port}/0"
            results: dict[str, list[dict[str, float]]] = {"6": [], "auto": []}
            for round_ in range(rounds):
                for layout in ("6", "auto"):
                    results[layout].append(await measure(url, layout, f"l{round_}{layout}",
                                                         jobs))
        finally:
            process.terminate()
            process.wait(10)
    print(f"{jobs} jobs x {rounds} rounds, medians (ms per job)")
    for key in ("add_redis_ms", "add_proxy_ms", "process_redis_ms", "process_proxy_ms"):
        plain = statistics.median(r[key] for r in results["6"])
        wrapped = statistics.median(r[key] for r in results["auto"])
        print(f"  {key:18} layout 6: {plain:.4f}  auto: {wrapped:.4f}  "
              f"ratio {wrapped / plain:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    asyncio.run(main(options.jobs, options.rounds))
