"""One workload on one core, for comparing two trees on a noisy machine.

``python -m benchmarks.pinned A|B [--jobs N] [--profile FILE]`` runs workload A (wrk adding
one job per request at C = 100) or B (N waiting jobs through an nginx endpoint at
concurrency 100) against this tree's proxy, with the proxy pinned to core 0 and Redis, nginx
and wrk to core 1, and prints the proxy's CPU per job from /proc. ``--profile`` runs the
proxy under cProfile (twistd's own ``--profile``) and prints its costliest functions and its
function calls per job instead: slower, but the call counts do not move with the machine.

Run it from each tree in turn (``cd <tree> && .venv/bin/python -m benchmarks.pinned B``),
alternating, and compare the means.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks import processes
from benchmarks.run import QUEUE, counts, fill, http, wait_for

PROXY_CORE, OTHERS_CORE = {0}, {1}


def _pin(pid: int, cores: set[int]) -> None:
    for each in [pid, *processes.children(pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(each, cores)


def _answers(base: str) -> bool:
    try:
        return processes._root_answers(base)
    except OSError:
        return False


@contextlib.contextmanager
def _proxy(workdir: Path, redis_url: str, profile: Path | None
           ) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``twistd -n bullmq-proxy`` on core 0; stopped with SIGTERM so a profile is saved."""
    number = processes.port()
    env = {**os.environ, "PYTHONPATH": str(processes.REPO), "REDIS_URL": redis_url,
           "AUTH_TOKENS": processes.TOKEN, "DATA_DIR": str(workdir / "proxy-data")}
    argv = [str(Path(sys.executable).with_name("twistd")), "-n", "--pidfile=",
            "--logfile", str(workdir / "proxy.log")]
    if profile is not None:
        argv += [f"--profile={profile}", "--profiler=cprofile", "--savestats"]
    argv += ["bullmq-proxy", "--listen", f"tcp:{number}:interface=127.0.0.1"]
    proxy = subprocess.Popen(argv, env=env, cwd=workdir, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{number}"
    try:
        if not wait_for(lambda: _answers(base), 30):
            raise RuntimeError(f"the proxy did not answer; see {workdir / 'proxy.log'}")
        _pin(proxy.pid, PROXY_CORE)
        yield base, proxy
    finally:
        proxy.send_signal(signal.SIGTERM)
        proxy.wait(60)


def add(workdir: Path, jobs: int, profile: Path | None) -> float:
    with processes.redis_server(workdir) as (url, red):
        _pin(red.pid, OTHERS_CORE)
        with _proxy(workdir, url, profile) as (base, proxy):
            env = {**os.environ, "BENCH_QUOTA": str(jobs // 2), "BENCH_TOKEN": processes.TOKEN,
                   "BENCH_PATH": f"/queues/{QUEUE}/jobs"}
            before = processes.cpu_of_tree(proxy.pid)
            load = subprocess.Popen(
                ["wrk", "-t2", "-c100", "-d60s", "-s",
                 str(processes.REPO / "benchmarks" / "add.lua"), base],
                env=env, stdout=subprocess.DEVNULL)
            _pin(load.pid, OTHERS_CORE)
            stored = wait_for(lambda: counts(url)["wait"] >= jobs, 120)
            cpu = processes.cpu_of_tree(proxy.pid) - before
            load.send_signal(signal.SIGINT)
            load.wait(30)
            if not stored:
                raise RuntimeError(f"fewer than {jobs} jobs were added in 120 s")
            return cpu / jobs


def process(workdir: Path, jobs: int, profile: Path | None) -> float:
    with processes.redis_server(workdir) as (url, red), \
            processes.nginx(workdir) as (endpoint, nginx):
        _pin(red.pid, OTHERS_CORE)
        _pin(nginx.pid, OTHERS_CORE)
        fill(url, jobs)
        with _proxy(workdir, url, profile) as (base, proxy):
            before = processes.cpu_of_tree(proxy.pid)
            status, answer = http("POST", base + "/workers", {
                "queue": QUEUE, "endpoint": {"url": endpoint, "method": "POST"},
                "opts": {"concurrency": 100}})
            if status != 200:
                raise RuntimeError(f"POST /workers answered {status}: {answer!s:.200}")
            done = wait_for(lambda: counts(url)["completed"] >= jobs, 300)
            cpu = processes.cpu_of_tree(proxy.pid) - before
            http("DELETE", f"{base}/workers/{QUEUE}")
            if not done:
                raise RuntimeError(f"fewer than {jobs} jobs were processed in 300 s")
            return cpu / jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", choices=["A", "B"])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--profile", type=Path)
    options = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-pinned-") as folder:
        run = add if options.workload == "A" else process
        per_job = run(Path(folder), options.jobs, options.profile)
    print(f"{options.workload}: {options.jobs} jobs, proxy CPU {1000 * per_job:.3f} ms/job "
          f"({time.perf_counter() - started:.1f} s in all)")
    if options.profile is not None:
        stats = pstats.Stats(str(options.profile))
        print(f"{stats.total_calls / options.jobs:.0f} function calls per job (under cProfile)")
        stats.sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
