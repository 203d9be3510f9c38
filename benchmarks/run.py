"""Run every workload side by side in one run; see benchmarks/README.md.

Each workload gets a fresh, private Redis; the proxy runs as ``twistd -n bullmq-proxy`` and its
CPU time and peak RSS come from /proc. Results: one JSON line per workload appended to
``benchmarks/results/<date>.jsonl`` and a printed report of ratios to the baselines.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis

from benchmarks import processes
from benchmarks.processes import REPO, TOKEN, cpu_of_tree, peak_rss_of_tree, rss_mb, usage

QUEUE = "bench"
WARM_UP_JOBS = 1000
RESULTS = REPO / "benchmarks" / "results"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def machine() -> str:
    model = next((line.split(":", 1)[1].strip()
                  for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.machine())
    return f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}"


def http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=AUTH)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            kind = response.headers.get("content-type") or ""
            return response.status, json.loads(raw) if "json" in kind else raw.decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def python_tool(module: str, *args: str) -> dict[str, Any]:
    """Run a benchmark client in its own process; its JSON line is the result."""
    out = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, check=True,
                         capture_output=True, text=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def counts(url: str) -> dict[str, int]:
    client = redis.Redis.from_url(url)
    try:
        return {
            "wait": client.llen(f"bull:{QUEUE}:wait"),
            "completed": client.zcard(f"bull:{QUEUE}:completed"),
            "failed": client.zcard(f"bull:{QUEUE}:failed"),
        }
    finally:
        client.close()


def fill(url: str, jobs: int) -> None:
    python_tool("benchmarks.baseline", "bulk", url, QUEUE, str(jobs))


# The systems workloads A and B run against, each in front of its own fresh Redis.
PROXY, TWISTED, ORIGINAL, NONE = "proxy", "twisted", "original", "none"
SIDES = {PROXY: "proxy", TWISTED: "proxy, Twisted Web channel",
         ORIGINAL: "original (Bun 1.5.3)"}


@contextlib.contextmanager
def stack(workdir: Path, system: str = PROXY, proxy_processes: int = 1) -> Iterator[Any]:
    """A private Redis and (unless ``system`` is ``none``) a proxy in front of it: this one
    (on its lean channel or on Twisted Web's) or the original."""
    workdir.mkdir(parents=True)
    with processes.redis_server(workdir) as (url, redis_process):
        if system == NONE:
            yield url, None, None, redis_process
            return
        server = (processes.bun_proxy(workdir, url) if system == ORIGINAL else
                  processes.proxy(workdir, url, proxy_processes,
                                  "twisted" if system == TWISTED else "lean"))
        with server as (base, proxy_process):
            yield url, base, proxy_process, redis_process


def profiled(system: str, pid: int, name: str) -> contextlib.AbstractContextManager[None]:
    """py-spy on this proxy (never the original: py-spy reads Python stacks only)."""
    if system == ORIGINAL:
        return contextlib.nullcontext()
    return processes.profiled(pid, name)


def rate(jobs: int, seconds: float) -> float:
    return round(jobs / seconds, 1) if seconds > 0 else 0.0


def time_until_stored(url: str, jobs: int, load: subprocess.Popen[str], started: float) -> float:
    """Seconds from ``started`` until the last job id was handed out.

    wrk runs for its whole duration even when every thread has stopped at its quota, so
    the end of the workload is read from BullMQ's job id counter instead.
    """
    client = redis.Redis.from_url(url)
    last, changed = 0, started
    try:
        while load.poll() is None:
            current = int(client.get(f"bull:{QUEUE}:id") or 0)
            if current != last:
                last, changed = current, time.perf_counter()
            if current >= jobs:
                break
            time.sleep(0.005)
    finally:
        client.close()
    return changed - started


# --- workload A: add ----------------------------------------------------------------------


def workload_a(workdir: Path, jobs: int, connections: int, system: str,
               proxy_processes: int = 1, rep: int = 0) -> list[dict]:
    """A proxy (``system``, with ``proxy_processes`` processes) under wrk."""
    where = workdir / f"a-{system}-{proxy_processes}-{rep}"
    with stack(where, system, proxy_processes) as (url, base, proxy, red):
        threads = 2
        # Warm-up on another queue: connections, Lua script loading and first batches are
        # not what the figures are about.
        warm = {**os.environ, "BENCH_QUOTA": str(WARM_UP_JOBS // threads),
                "BENCH_PATH": "/queues/warm-up/jobs", "BENCH_TOKEN": TOKEN}
        subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", "-d3s", "-s",
                        str(REPO / "benchmarks" / "add.lua"), base],
                       env=warm, check=True, capture_output=True, timeout=60)
        before = cpu_of_tree(proxy.pid)
        env = {**os.environ, "BENCH_QUOTA": str(jobs // threads),
               "BENCH_PATH": f"/queues/{QUEUE}/jobs", "BENCH_TOKEN": TOKEN}
        wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        with profiled(system, proxy.pid, f"A-{side(system, proxy_processes)}-{rep}"):
            load = subprocess.Popen(
                ["wrk", f"-t{threads}", f"-c{connections}", "-d60s", "--timeout", "10s",
                 "--latency", "-s", str(REPO / "benchmarks" / "add.lua"), base],
                env=env, stdout=subprocess.PIPE, text=True,
            )
            seconds = time_until_stored(url, jobs, load, started)
        time.sleep(1)  # the last responses are on their way; then wrk reports on SIGINT
        load.send_signal(signal.SIGINT)
        out, _ = load.communicate(timeout=90)
        wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        summary = json.loads(out.strip().splitlines()[-1])
        stored = counts(url)["wait"]
        cpu = cpu_of_tree(proxy.pid) - before
        return [{
            "workload": "A-add", "side": side(system, proxy_processes), "rep": rep,
            "jobs": summary["requests"],
            "stored": stored, "connections": connections, "proxy_processes": proxy_processes,
            "jobs_per_s": rate(min(stored, jobs), seconds),
            "p50_ms": summary["p50_us"] / 1000, "p99_ms": summary["p99_us"] / 1000,
            "max_ms": summary["max_us"] / 1000,
            "errors": summary["status_errors"] + summary["socket_errors"],
            "proxy_cpu_s": round(cpu, 2),
            "proxy_cpu_ms_per_job": round(1000 * cpu / max(summary["requests"], 1), 3),
            "proxy_peak_rss_mb": round(peak_rss_of_tree(proxy.pid), 1),
            "loadgen_cpu_s": round(wrk_after.ru_utime + wrk_after.ru_stime
                                   - wrk_before.ru_utime - wrk_before.ru_stime, 2),
            "redis_cpu_s": round(usage(red.pid).cpu_s, 2),
        }]


def side(system: str, proxy_processes: int = 1) -> str:
    name = SIDES[system]
    return name if proxy_processes == 1 else f"{name} --processes {proxy_processes}"


def add_baselines(workdir: Path, jobs: int) -> list[dict]:
    results = []
    for mode, name in (("add", "Queue.add"), ("bulk", "Queue.addBulk(100)")):
        with stack(workdir / f"a-{mode}", NONE) as (url, _, _, red):
            result = python_tool("benchmarks.baseline", mode, url, QUEUE, str(jobs))
            results.append({
                "workload": "A-add", "side": f"baseline {name}", "jobs": result["jobs"],
                "jobs_per_s": rate(result["jobs"], result["seconds"]),
                "client_cpu_s": round(result["cpu_s"], 2),
                "redis_cpu_s": round(usage(red.pid).cpu_s, 2),
            })
    return results


# --- workload B: process through an HTTP endpoint -----------------------------------------


def wait_for(done: Callable[[], bool], limit: float) -> bool:
    deadline = time.monotonic() + limit
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def workload_b(workdir: Path, jobs: int, system: str, proxy_processes: int = 1,
               rep: int = 0) -> list[dict]:
    """A proxy (``system``) with ``proxy_processes`` processes: each runs the queue's worker
    with the registered concurrency, as separate proxy instances would."""
    where = workdir / f"b-{system}-{proxy_processes}-{rep}"
    with stack(where, system, proxy_processes) as (url, base, proxy, _), \
            processes.nginx(where) as (endpoint, nginx_process):
        fill(url, jobs)
        before = cpu_of_tree(proxy.pid)
        nginx_before = cpu_of_tree(nginx_process.pid)
        redis_before = redis_cpu_s(url)
        started = time.perf_counter()
        status, answer = http("POST", base + "/workers", {
            "queue": QUEUE,
            "endpoint": {"url": endpoint, "method": "POST", "timeout": 10000},
            "opts": {"concurrency": 100},
        })
        if status != 200:
            return [{"workload": "B-process", "side": side(system, proxy_processes),
                     "runnable": False,
                     "reason": f"POST /workers answered {status}: {answer!s:.200}"}]
        with profiled(system, proxy.pid, f"B-{side(system, proxy_processes)}-{rep}"):
            finished = wait_for(lambda: counts(url)["completed"] + counts(url)["failed"] >= jobs,
                                300)
        seconds = time.perf_counter() - started
        final = counts(url)
        cpu = cpu_of_tree(proxy.pid) - before
        redis_used = redis_cpu_s(url) - redis_before
        http("DELETE", f"{base}/workers/{QUEUE}")
        latency = job_latencies_ms(url)
        return [{
            "workload": "B-process", "side": side(system, proxy_processes), "runnable": True,
            "proxy_processes": proxy_processes, "rep": rep,
            "p50_ms": percentile(latency, 50), "p99_ms": percentile(latency, 99),
            "max_ms": latency[-1] if latency else 0.0,
            "finished": finished, "jobs": final["completed"], "failed": final["failed"],
            "jobs_per_s": rate(final["completed"], seconds),
            "proxy_cpu_s": round(cpu, 2),
            "proxy_cpu_ms_per_job": round(1000 * cpu / max(final["completed"], 1), 3),
            "proxy_peak_rss_mb": round(peak_rss_of_tree(proxy.pid), 1),
            "endpoint_cpu_s": round(cpu_of_tree(nginx_process.pid) - nginx_before, 2),
            "redis_cpu_ms_per_job": round(1000 * redis_used / max(final["completed"], 1), 3),
        }]


def job_latencies_ms(url: str) -> list[float]:
    """Each completed job's time from taken (processedOn) to done (finishedOn), sorted: the
    endpoint call and the proxy's work around it."""
    client = redis.Redis.from_url(url)
    try:
        ids = client.zrange(f"bull:{QUEUE}:completed", 0, -1)
        pipe = client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(f"bull:{QUEUE}:{job_id.decode()}", "processedOn", "finishedOn")
        return sorted(float(done) - float(taken) for taken, done in pipe.execute()
                      if taken and done)
    finally:
        client.close()


def percentile(ordered: list[float], rank: int) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, len(ordered) * rank // 100)]


def redis_cpu_s(url: str) -> float:
    client = redis.Redis.from_url(url)
    try:
        info = client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    finally:
        client.close()


def worker_baseline(workdir: Path, jobs: int) -> list[dict]:
    """bullmq's Worker, and the proxy's fetch-next loop with no endpoint behind it; both
    with the Redis CPU they cost per job, which bounds what any worker can reach here."""
    results = []
    for mode, name in (("worker", "baseline bullmq.Worker"),
                       ("fetch-next", "proxy loop, no endpoint")):
        with stack(workdir / f"b-{mode}", NONE) as (url, _, _, _):
            fill(url, jobs)
            redis_before = redis_cpu_s(url)
            result = python_tool("benchmarks.baseline", mode, url, QUEUE, str(jobs))
            redis_used = redis_cpu_s(url) - redis_before
            results.append({
                "workload": "B-process", "side": name, "jobs": result["jobs"],
                "jobs_per_s": rate(result["jobs"], result["seconds"]),
                "client_cpu_s": round(result["cpu_s"], 2),
                "client_cpu_ms_per_job": round(1000 * result["cpu_s"] / max(result["jobs"], 1), 3),
                "redis_cpu_ms_per_job": round(1000 * redis_used / max(result["jobs"], 1), 3),
            })
    return results


# --- workload C: WebSocket ----------------------------------------------------------------


def workload_c(workdir: Path, jobs: int) -> list[dict]:
    results = []
    with stack(workdir / "c-proxy") as (url, base, proxy, _):
        ws = base.replace("http://", "ws://") + f"/ws/queues/{QUEUE}"
        for mode, target in (("add", ws), ("worker", ws + "/process/100")):
            waiting = counts(url)["wait"]
            if mode == "worker" and waiting < jobs:
                fill(url, jobs - waiting)
            before = cpu_of_tree(proxy.pid)
            try:
                result = python_tool("benchmarks.wsclient", mode, target, str(jobs))
            except subprocess.CalledProcessError as err:
                results.append({"workload": f"C-ws-{mode}", "side": "proxy", "runnable": False,
                                "reason": err.stderr.strip().splitlines()[-1][:200]})
                continue
            cpu = cpu_of_tree(proxy.pid) - before
            final = counts(url)
            results.append({
                "workload": f"C-ws-{mode}", "side": "proxy", "runnable": True,
                "jobs": result["jobs"], "errors": result["errors"],
                "redis_wait": final["wait"], "redis_completed": final["completed"],
                "jobs_per_s": rate(result["jobs"], result["seconds"]),
                "proxy_cpu_ms_per_job": round(1000 * cpu / max(result["jobs"], 1), 3),
                "loadgen_cpu_s": round(result["cpu_s"], 2),
                "proxy_peak_rss_mb": round(peak_rss_of_tree(proxy.pid), 1),
            })
    return results


# --- M: memory with many idle queues ------------------------------------------------------


def workload_m(workdir: Path, queues: int) -> list[dict]:
    with stack(workdir / "m-proxy") as (_, base, proxy, _):
        start_rss = rss_mb(proxy.pid)
        for n in range(queues):
            status, _ = http("POST", f"{base}/queues/idle-{n}/jobs", [{"name": "x", "data": n}])
            assert status == 200, status
        time.sleep(5)
        return [{
            "workload": "M-idle-queues", "side": "proxy", "queues": queues,
            "rss_start_mb": round(start_rss, 1), "rss_idle_mb": round(rss_mb(proxy.pid), 1),
            "proxy_peak_rss_mb": round(peak_rss_of_tree(proxy.pid), 1),
        }]


# The WebSocket workloads do what A and B do, over another transport.
BASELINE_OF = {"C-ws-add": "A-add", "C-ws-worker": "B-process"}


# --- S: memory under a steady load -------------------------------------------------------


def workload_s(workdir: Path, seconds: int, connections: int) -> list[dict]:
    """RSS every 5 s while wrk adds jobs for ``seconds``: growth means a leak."""
    with stack(workdir / "s-proxy") as (_, base, proxy, _):
        env = {**os.environ, "BENCH_QUOTA": "1000000", "BENCH_PATH": f"/queues/{QUEUE}/jobs",
               "BENCH_TOKEN": TOKEN}
        load = subprocess.Popen(
            ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
             "-s", str(REPO / "benchmarks" / "add.lua"), base],
            env=env, stdout=subprocess.PIPE, text=True,
        )
        samples = []
        while load.poll() is None:
            time.sleep(5)
            samples.append(round(rss_mb(proxy.pid), 1))
        summary = json.loads(load.communicate()[0].strip().splitlines()[-1])
        return [{
            "workload": "S-steady-rss", "side": "proxy", "seconds": seconds,
            "jobs": summary["requests"], "errors": summary["status_errors"],
            "rss_samples_mb": samples,
            "rss_growth_second_half_mb": round(samples[-1] - samples[len(samples) // 2], 1)
            if samples else 0.0,
        }]


# --- F: the HTTP floors ------------------------------------------------------------------

FLOOR_SECONDS = 8
CLIENT_FLOOR_CALLS = 20_000
CLIENT_KINDS = ("treq", "agent", "treq-lean", "lean")


def workload_f(workdir: Path, connections: int) -> list[dict]:
    """What one request costs each HTTP server layer (Twisted Web's Site against the lean
    channel, serving the same resource, under wrk) and one call each client (treq, Agent, the
    proxy's agent under treq and alone, against nginx): the floors under workloads A and B."""
    results = []
    for kind in ("twisted", "lean"):
        with processes.floor_server(kind) as (base, server):
            before = cpu_of_tree(server.pid)
            env = {**os.environ, "BENCH_QUOTA": str(10**9),
                   "BENCH_PATH": f"/queues/{QUEUE}/jobs", "BENCH_TOKEN": TOKEN}
            out = subprocess.run(
                ["wrk", "-t1", f"-c{connections}", f"-d{FLOOR_SECONDS}s", "--latency", "-s",
                 str(REPO / "benchmarks" / "add.lua"), base],
                env=env, check=True, capture_output=True, text=True, timeout=60,
            ).stdout
            cpu = cpu_of_tree(server.pid) - before
        summary = json.loads(out.strip().splitlines()[-1])
        results.append({
            "workload": "F-server", "side": f"floor: {kind} server", "jobs": summary["requests"],
            "jobs_per_s": rate(summary["requests"], summary["duration_us"] / 1e6),
            "p50_ms": summary["p50_us"] / 1000, "p99_ms": summary["p99_us"] / 1000,
            "max_ms": summary["max_us"] / 1000,
            "server_cpu_ms_per_request": round(1000 * cpu / max(summary["requests"], 1), 4),
        })
    where = workdir / "f-client"
    where.mkdir(parents=True)
    with processes.nginx(where) as (endpoint, _):
        for kind in CLIENT_KINDS:
            result = python_tool("benchmarks.floors.client", kind, endpoint,
                                 str(CLIENT_FLOOR_CALLS), str(connections))
            if "error" in result:
                results.append({"workload": "F-client", "side": f"floor: {kind} client",
                                "runnable": False, "reason": result["error"]})
                continue
            results.append({
                "workload": "F-client", "side": f"floor: {kind} client", "jobs": result["calls"],
                "jobs_per_s": rate(result["calls"], result["seconds"]),
                "client_cpu_ms_per_call": round(1000 * result["cpu_s"] / result["calls"], 4),
            })
    return results


def report(results: list[dict]) -> None:
    baselines = {(r["workload"], r["side"]): r for r in results
                 if r["side"].startswith("baseline")}
    originals = {(r["workload"], r.get("rep", 0)): r for r in results
                 if r["side"] == SIDES[ORIGINAL] and r.get("runnable") is not False}
    for r in results:
        line = f"{r['workload']:<14} {r['side']:<32}"
        if r.get("runnable") is False:
            print(f"{line} not runnable: {r['reason']}")
            continue
        if "jobs_per_s" in r:
            line += f" {r['jobs_per_s']:>9.0f} jobs/s"
        if "p99_ms" in r:
            line += f"  p50 {r['p50_ms']:.1f} p99 {r['p99_ms']:.1f} max {r['max_ms']:.1f} ms"
        if r["side"].startswith(("proxy", "original")):
            compared = BASELINE_OF.get(r["workload"], r["workload"])
            ratios = [f"{r['jobs_per_s'] / b['jobs_per_s']:.2f}x {name}"
                      for (workload, name), b in baselines.items()
                      if workload == compared and "jobs_per_s" in r and b["jobs_per_s"]]
            if ratios:
                line += "  = " + ", ".join(ratios)
            if "proxy_cpu_ms_per_job" in r:
                line += f"  proxy CPU {r['proxy_cpu_ms_per_job']:.3f} ms/job"
            original = originals.get((r["workload"], r.get("rep", 0)))
            if original is not None and original is not r and "proxy_cpu_ms_per_job" in r:
                line += (f" ({r['proxy_cpu_ms_per_job'] / original['proxy_cpu_ms_per_job']:.2f}x"
                         f" the original's, p99 {r['p99_ms'] / original['p99_ms']:.2f}x)")
            if "proxy_peak_rss_mb" in r:
                line += f"  peak RSS {r['proxy_peak_rss_mb']:.0f} MB"
            if "rss_samples_mb" in r:
                line += (f"  {r['jobs']} jobs in {r['seconds']} s, RSS every 5 s "
                         f"{r['rss_samples_mb']} MB")
            if "rss_idle_mb" in r:
                line += f"  idle RSS {r['rss_idle_mb']:.0f} MB with {r['queues']} queues"
        if "server_cpu_ms_per_request" in r:
            line += f"  server CPU {r['server_cpu_ms_per_request']:.3f} ms/request"
        if "client_cpu_ms_per_call" in r:
            line += f"  client CPU {r['client_cpu_ms_per_call']:.3f} ms/call"
        if "redis_cpu_ms_per_job" in r:
            line += f"  Redis CPU {r['redis_cpu_ms_per_job']:.3f} ms/job"
        print(line)
    together(results)


def together(results: list[dict]) -> None:
    """Add and process phases together, per repetition: CPU per job of each proxy against the
    original's in the same run (the target of issue 13)."""
    per: dict[tuple[str, int], dict[str, float]] = {}
    for r in results:
        if r["workload"] in ("A-add", "B-process") and "proxy_cpu_ms_per_job" in r:
            per.setdefault((r["side"], r.get("rep", 0)), {})[r["workload"]] = \
                r["proxy_cpu_ms_per_job"]
    # Per system, each phase's CPU summed over the repetitions: its own, then the original's.
    pooled: dict[str, tuple[dict[str, float], dict[str, float]]] = {}
    reps: dict[str, int] = {}
    for (name, rep), phases in sorted(per.items(), key=lambda item: item[0][1]):
        original = per.get((SIDES[ORIGINAL], rep))
        if name == SIDES[ORIGINAL] or original is None or len(phases) < 2 or len(original) < 2:
            continue
        _together_line(f"together (rep {rep}) {name:<32}", phases, original)
        for total, each in zip(pooled.setdefault(name, ({}, {})), (phases, original), strict=True):
            for phase, cpu in each.items():
                total[phase] = total.get(phase, 0.0) + cpu
        reps[name] = reps.get(name, 0) + 1
    for name, (mine, theirs) in pooled.items():
        if reps[name] > 1:
            # Noise moves single repetitions both ways; the pool is the figure to quote.
            _together_line(f"together (pooled, {reps[name]} reps) {name:<23}", mine, theirs)


def _together_line(label: str, phases: dict[str, float], original: dict[str, float]) -> None:
    mine, theirs = sum(phases.values()), sum(original.values())
    print(f"{label} {mine:.3f} ms/job = {mine / theirs:.2f}x the original's {theirs:.3f} "
          f"(add {phases['A-add'] / original['A-add']:.2f}x, "
          f"process {phases['B-process'] / original['B-process']:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--proxy-processes", default="1,2",
                        help="comma-separated --processes values to run workloads A and B with")
    parser.add_argument("--systems", default=f"{PROXY},{ORIGINAL}",
                        help="comma-separated systems for A and B: proxy (lean channel), "
                             "twisted (this proxy on Twisted Web's channel), original (Bun)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run A and B this many times, the systems alternating")
    parser.add_argument("--only", default="A,B,C,M,S,F", help="comma-separated workloads")
    parser.add_argument("--note", default="", help="free text stored with every result")
    args = parser.parse_args()
    chosen = set(args.only.upper().split(","))
    process_counts = [int(count) for count in args.proxy_processes.split(",")]
    systems = args.systems.split(",")
    if ORIGINAL in systems and not processes.BUN_PROXY.exists():
        print(f"# the original is left out: no {processes.BUN_PROXY} (set BUN_PROXY)")
        systems.remove(ORIGINAL)

    def runs() -> list[tuple[str, int, int]]:
        """(system, processes, repetition): only this proxy runs with several processes."""
        return [(system, count, rep) for rep in range(args.repeat) for system in systems
                for count in (process_counts if system == PROXY else [1])]

    stamp = datetime.datetime.now(datetime.UTC)
    common = {"date": stamp.isoformat(timespec="seconds"), "machine": machine(),
              "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                       capture_output=True, text=True).stdout.strip(),
              "note": args.note}
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bullmq-proxy-bench-") as tmp:
        workdir = Path(tmp)
        for name, workload in (
            ("A", lambda: [
                *(row for system, count, rep in runs()
                  for row in workload_a(workdir, args.jobs, args.connections, system, count,
                                        rep)),
                *add_baselines(workdir, args.jobs),
            ]),
            ("B", lambda: [
                *(row for system, count, rep in runs()
                  for row in workload_b(workdir, args.jobs, system, count, rep)),
                *worker_baseline(workdir, args.jobs),
            ]),
            ("C", lambda: workload_c(workdir, args.jobs)),
            ("M", lambda: workload_m(workdir, 1000)),
            ("S", lambda: workload_s(workdir, 60, args.connections)),
            ("F", lambda: workload_f(workdir, args.connections)),
        ):
            if name in chosen:
                results += workload()
    RESULTS.mkdir(exist_ok=True)
    with (RESULTS / f"{stamp.date().isoformat()}.jsonl").open("a") as out:
        for r in results:
            out.write(json.dumps({**common, **r}) + "\n")
    print(f"# {common['date']} on {common['machine']} at {common['commit']}")
    report(results)


if __name__ == "__main__":
    main()
