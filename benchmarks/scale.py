"""What each registered queue costs an idle proxy: a curve over the number of queues.

For each size, a fresh private Redis and one proxy (``twistd -n bullmq-proxy``); N HTTP-endpoint
workers are registered (idle queues: no job is ever added, so the endpoint is never called),
the proxy is left to settle, and then, over a window of idle time:

- the Redis connections it holds (``CLIENT LIST``, every client but this script's own);
- its RSS (``VmRSS`` from /proc) at the end of the window;
- its CPU (utime + stime) over the window, as a share of one core;
- the commands Redis ran a second over the window (``INFO commandstats``, less the one
  ``INFO`` call of this script that the window counts), and the commands that made most of them.

    .venv/bin/python -m benchmarks.scale --queues 10,100,1000 --window 60 --note "what changed"

With ``--touch``, one job is first added to every queue (its call fails: nothing listens at
the endpoint) and the window starts once all have failed: the cost of queues idle again after
some work. The window should cover at least one stalled-job interval (30 s by default), or
the stalled checks are missed. Each size appends a JSON line to
``benchmarks/results/scale-<date>.jsonl``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from benchmarks import processes
from benchmarks.processes import REPO, cpu_of_tree, rss_mb
from benchmarks.run import http, machine

RESULTS = REPO / "benchmarks" / "results"
# Nothing listens there: an idle queue's endpoint is never called.
ENDPOINT = "http://127.0.0.1:9/never-called"


def commands_run(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def proxy_connections(client: redis.Redis) -> int:
    own = client.client_id()
    return sum(1 for entry in client.client_list() if int(entry["id"]) != own)


def register(base: str, queues: int, concurrency: int) -> None:
    def one(n: int) -> None:
        status, answer = http("POST", base + "/workers", {
            "queue": f"scale-{n}",
            "endpoint": {"url": ENDPOINT, "method": "POST"},
            "opts": {"concurrency": concurrency},
        })
        if status != 200:
            raise RuntimeError(f"POST /workers answered {status}: {answer!s:.200}")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(queues)))


def running(base: str, queues: int) -> int:
    """How many of the registered queues have a running worker in the proxy."""
    def one(n: int) -> bool:
        status, answer = http("GET", f"{base}/workers/scale-{n}")
        return status == 200 and answer["state"]["running"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return sum(pool.map(one, range(queues)))


def touch(url: str, base: str, queues: int) -> None:
    """One job on every queue, then wait until each has been tried and failed."""
    def one(n: int) -> None:
        status, answer = http("POST", f"{base}/queues/scale-{n}/jobs",
                              [{"name": "touch", "data": n}])
        if status != 200:
            raise RuntimeError(f"adding a job answered {status}: {answer!s:.200}")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(queues)))
    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + 600
        while sum(client.zcard(f"bull:scale-{n}:failed") for n in range(queues)) < queues:
            if time.monotonic() > deadline:
                raise RuntimeError("the touched jobs did not all fail")
            time.sleep(1)
    finally:
        client.close()


def wait_until_running(base: str, queues: int, limit: float) -> float:
    started = time.monotonic()
    while running(base, queues) < queues:
        if time.monotonic() - started > limit:
            raise RuntimeError(f"not every one of the {queues} workers runs after {limit} s")
        time.sleep(1)
    return time.monotonic() - started


def measure(workdir: Path, queues: int, concurrency: int, settle: float,
            window: float, touched: bool) -> dict[str, Any]:
    workdir.mkdir(parents=True)
    with processes.redis_server(workdir) as (url, _), \
            processes.proxy(workdir, url) as (base, proxy):
        client = redis.Redis.from_url(url, decode_responses=True)
        try:
            rss_before = rss_mb(proxy.pid)
            register(base, queues, concurrency)
            start_s = wait_until_running(base, queues, 600)
            if touched:
                touch(url, base, queues)
            time.sleep(settle)
            before, cpu_before, at = commands_run(client), cpu_of_tree(proxy.pid), time.monotonic()
            time.sleep(window)
            after, cpu_after = commands_run(client), cpu_of_tree(proxy.pid)
            elapsed = time.monotonic() - at
            connections = proxy_connections(client)
        finally:
            client.close()
        rss = rss_mb(proxy.pid)
    calls = {name: after[name] - before.get(name, 0) for name in after}
    calls["info"] = calls.get("info", 0) - 1
    total = sum(calls.values())
    top = sorted(((n, c) for n, c in calls.items() if c > 0), key=lambda item: -item[1])[:6]
    return {
        "queues": queues, "concurrency": concurrency, "touched": touched,
        "connections": connections,
        "rss_mb": round(rss, 1), "rss_empty_mb": round(rss_before, 1),
        "idle_cpu_pct": round(100 * (cpu_after - cpu_before) / elapsed, 2),
        "redis_cmds_per_s": round(total / elapsed, 1),
        "top_commands_per_s": {n: round(c / elapsed, 2) for n, c in top},
        "seconds_to_start_all": round(start_s, 1), "window_s": round(elapsed, 1),
    }


def commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                         capture_output=True, text=True, check=False)
    return out.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queues", default="10,100,1000",
                        help="comma-separated numbers of registered queues")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="opts.concurrency of every registered worker")
    parser.add_argument("--settle", type=float, default=10, help="idle seconds before the window")
    parser.add_argument("--window", type=float, default=60, help="idle seconds measured")
    parser.add_argument("--touch", action="store_true",
                        help="one (failing) job on every queue before the window")
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    out = RESULTS / f"scale-{now:%Y-%m-%d}.jsonl"
    print(f"{'queues':>6} {'conc':>4} {'conns':>6} {'RSS MB':>7} {'idle CPU %':>10} "
          f"{'cmds/s':>7}  top commands/s")
    with tempfile.TemporaryDirectory(prefix="bmqp-scale-") as tmp:
        for queues in (int(n) for n in args.queues.split(",")):
            row = measure(Path(tmp) / f"q{queues}", queues, args.concurrency, args.settle,
                          args.window, args.touch)
            row.update(date=f"{now:%Y-%m-%d %H:%M}", machine=machine(), commit=commit(),
                       note=args.note)
            with out.open("a") as results:
                results.write(json.dumps(row) + "\n")
            top = ", ".join(f"{n} {c}" for n, c in row["top_commands_per_s"].items())
            print(f"{queues:>6} {args.concurrency:>4} {row['connections']:>6} "
                  f"{row['rss_mb']:>7} {row['idle_cpu_pct']:>10} {row['redis_cmds_per_s']:>7}"
                  f"  {top}", flush=True)


if __name__ == "__main__":
    main()
