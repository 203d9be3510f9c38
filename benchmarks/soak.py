"""Soak: adds, HTTP-endpoint dispatch and WebSocket clients mixed, at a steady rate, for a
long while; the error count, and RSS and open descriptors sampled over the run.

    .venv/bin/python -m benchmarks.soak --seconds 300 --rate 600

``--rate`` is the jobs added a second (half of what a run of workload A measured here is a
fair choice). Half the jobs go to a queue whose worker is an nginx endpoint, half to one a
WebSocket push worker serves; a WebSocket queue socket reads counts all along. Every job
must complete and every request must succeed: the errors are printed, with the RSS and
descriptor samples.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import redis.asyncio as aredis
import websockets.asyncio.client

from benchmarks.processes import TOKEN, nginx, proxy, redis_server, rss_mb

AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def post(base: str, path: str, body: object) -> int:
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    data = json.dumps(body).encode()
    head = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(data)}",
            "Connection: close", *(f"{k}: {v}" for k, v in AUTH.items())]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
    status = int((await reader.readline()).split()[1])
    writer.close()
    return status


async def soak(base: str, pid: int, redis_url: str, endpoint: str, seconds: float,
               rate: float) -> dict[str, object]:
    ws_base = base.replace("http://", "ws://")
    assert await post(base, "/workers", {"queue": "soak-http", "endpoint": {
        "url": endpoint, "method": "POST"}, "opts": {"concurrency": 20}}) == 200
    worker = await websockets.asyncio.client.connect(
        f"{ws_base}/ws/queues/soak-ws/process/20?token={TOKEN}", max_size=None)
    reader = await websockets.asyncio.client.connect(
        f"{ws_base}/ws/queues/soak-ws?token={TOKEN}", max_size=None)
    errors: list[str] = []
    added = 0
    samples: list[tuple[float, float, int]] = []

    async def work() -> None:
        async for raw in worker:
            message = json.loads(raw)
            await worker.send(json.dumps({"id": message["id"], "data": {"result": "ok"}}))

    async def read_counts() -> None:
        calls = 0
        while True:
            calls += 1
            await reader.send(json.dumps({"id": calls, "data": {"fn": "getJobCounts",
                                                                "args": ["completed"]}}))
            if "err" in json.loads(await reader.recv())["data"]:
                errors.append("getJobCounts err")
            await asyncio.sleep(0.5)

    async def sample() -> None:
        start = time.monotonic()
        while True:
            samples.append((time.monotonic() - start, rss_mb(pid), descriptors(pid)))
            await asyncio.sleep(10)

    background = [asyncio.ensure_future(task()) for task in (work, read_counts, sample)]
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        batch = max(1, int(rate / 10))
        for queue in ("soak-http", "soak-ws"):
            status = await post(base, f"/queues/{queue}/jobs",
                                [{"name": "s", "data": {"n": n}} for n in range(batch // 2)])
            if status != 200:
                errors.append(f"add answered {status}")
            else:
                added += batch // 2
        await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - start) % 0.1))
    client = aredis.Redis.from_url(redis_url)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = sum([await client.zcard(f"bull:{q}:completed") for q in ("soak-http", "soak-ws")])
        if done >= added:
            break
        await asyncio.sleep(0.5)
    for task in background:
        task.cancel()
    await worker.close()
    await reader.close()
    await client.aclose()
    return {"seconds": seconds, "added": added, "completed": done, "errors": errors,
            "rss_mb": [round(s[1], 1) for s in samples], "fds": [s[2] for s in samples]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--rate", type=float, default=600, help="jobs added a second")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        with redis_server(workdir) as (redis_url, _), nginx(workdir) as (endpoint, _), \
                proxy(workdir, redis_url) as (base, process):
            result = asyncio.run(soak(base, process.pid, redis_url, endpoint, options.seconds,
                                      options.rate))
    rss, fds = result["rss_mb"], result["fds"]
    print(json.dumps({**result, "errors": len(result["errors"]),
                      "first_errors": result["errors"][:5]}, indent=1))
    print(f"RSS MB: first {rss[0]}, median {statistics.median(rss)}, last {rss[-1]}; "
          f"descriptors: first {fds[0]}, max {max(fds)}, last {fds[-1]}")


if __name__ == "__main__":
    main()
