"""The processes a benchmark run starts (Redis, the proxy, nginx) and what /proc says of them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import attrs
import redis

from bullmq_proxy.redis.embedded import find_redis_server, free_port, redis_server_argv

REPO = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"
TICKS = os.sysconf("SC_CLK_TCK")
# The original (Bun) proxy's launcher, in ../shared beside the checkout; BUN_PROXY overrides.
BUN_PROXY = Path(os.environ.get("BUN_PROXY", REPO.parent / "shared/reference/run-bun-proxy"))


def port() -> int:
    """A free loopback port; inside ``BENCH_PORTS`` (``low-high``) when it is set, so that a
    run on a shared machine keeps to the range it was given."""
    span = os.environ.get("BENCH_PORTS")
    if not span:
        return free_port()
    global _last_port
    low, high = (int(end) for end in span.split("-"))
    # Round the range, so that a port just handed out (and not bound yet) is not again.
    for step in range(1, high - low + 2):
        candidate = low + (_last_port - low + step) % (high - low + 1)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", candidate))
            except OSError:
                continue
        _last_port = candidate
        return candidate
    raise RuntimeError(f"no free port in BENCH_PORTS={span}")


_last_port = 0


@attrs.frozen
class Usage:
    """CPU seconds and peak resident memory of one process, as /proc reports them."""

    cpu_s: float
    peak_rss_mb: float


def usage(pid: int) -> Usage:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICKS
    peak_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak_kb = int(line.split()[1])
    return Usage(cpu, peak_kb / 1024)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def cpu_of_tree(pid: int) -> float:
    return usage(pid).cpu_s + sum(cpu_of_tree(child) for child in children(pid))


def peak_rss_of_tree(pid: int) -> float:
    """Sum of the peak RSS of a process and its descendants (an upper bound of the total)."""
    return usage(pid).peak_rss_mb + sum(peak_rss_of_tree(child) for child in children(pid))


def listening_sockets(port: int) -> int:
    """How many sockets listen on ``port`` (state 0A in /proc/net/tcp)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
            count += 1
    return count


def _wait_until(ready: object, what: str, process: subprocess.Popen[bytes], limit: float) -> None:
    deadline = time.monotonic() + limit
    while True:
        try:
            if ready():  # type: ignore[operator]
                return
        except Exception:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.05)


def _root_answers(base: str) -> bool:
    with urllib.request.urlopen(base + "/", timeout=1) as response:
        return response.status == 200


@contextlib.contextmanager
def _running(process: subprocess.Popen[bytes], ready: object, what: str,
             limit: float) -> Iterator[None]:
    """Once ``ready()`` is true, until the block ends: then the process is stopped."""
    try:
        _wait_until(ready, what, process, limit)
        yield
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A private, non-persistent redis-server on a free loopback port."""
    number = port()
    data = workdir / "redis"
    data.mkdir()
    argv = redis_server_argv(find_redis_server(), number, str(data), persistent=False)
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{number}/0"
    try:
        client = redis.Redis.from_url(url)
        _wait_until(client.ping, "redis-server", process, 10)
        client.close()
        yield url, process
    finally:
        _stop(process)


@contextlib.contextmanager
def proxy(
    workdir: Path, redis_url: str, processes: int = 1, http_server: str = "lean"
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``twistd -n bullmq-proxy`` on a free port; yields its base URL and the process."""
    number = port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "REDIS_URL": redis_url,
        "AUTH_TOKENS": TOKEN,
        "DATA_DIR": str(workdir / "proxy-data"),
        "HTTP_SERVER": http_server,
    }
    argv = [
        str(Path(sys.executable).with_name("twistd")), "-n", "--pidfile=",
        "--logfile", str(workdir / "proxy.log"),
        "bullmq-proxy", "--listen", f"tcp:{number}:interface=127.0.0.1",
    ]
    if processes > 1:
        argv += ["--processes", str(processes)]
    process = subprocess.Popen(argv, env=env, cwd=workdir, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{number}"

    def answers() -> bool:
        # Every process must listen before the load starts: wrk opens its connections once.
        return listening_sockets(number) >= processes and _root_answers(base)

    with _running(process, answers, "the proxy", 30):
        yield base, process


NGINX_CONF = """
worker_processes 1;
daemon off;
error_log {dir}/error.log;
pid {dir}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "done"; }}
    }}
}}
"""


@contextlib.contextmanager
def profiled(pid: int, name: str) -> Iterator[None]:
    """With ``BENCH_PROFILE=<dir>``: py-spy samples ``pid`` (and its children) meanwhile, into
    ``<dir>/<name>.txt`` (raw stacks: one line a stack, then its sample count)."""
    folder = os.environ.get("BENCH_PROFILE")
    if not folder:
        yield
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    out = Path(folder) / f"{name.replace(' ', '-').replace('/', '-')}.txt"
    spy = subprocess.Popen(
        [str(Path(sys.executable).with_name("py-spy")), "record", "-p", str(pid), "-r", "200",
         "--subprocesses", "-f", "raw", "-o", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # py-spy attaches
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(30)


@contextlib.contextmanager
def bun_proxy(workdir: Path, redis_url: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The original BullMQ Proxy (Bun) on a free port, with the original's env vars; its
    launcher installs it on first use. Yields its base URL and the (bun) process."""
    number = port()
    redis_address = urlsplit(redis_url)
    env = {
        **os.environ,
        "PORT": str(number),
        "AUTH_TOKENS": TOKEN,
        # Not REDIS_URL: with it the original races its own connection at start.
        "REDIS_HOST": redis_address.hostname or "127.0.0.1",
        "REDIS_PORT": str(redis_address.port or 6379),
    }
    log = (workdir / "bun-proxy.log").open("wb")
    process = subprocess.Popen([str(BUN_PROXY)], env=env, cwd=workdir, stdout=log,
                               stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{number}"
    # The first start installs it from the npm registry.
    with log, _running(process, lambda: _root_answers(base), "the original (Bun) proxy", 300):
        yield base, process


@contextlib.contextmanager
def floor_server(kind: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``benchmarks/floors/server.py`` (``twisted`` or ``lean``) on a free port; yields its
    base URL and the process."""
    number = port()
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.floors.server", kind, str(number)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with _running(process, lambda: listening_sockets(number) == 1, f"the {kind} floor server",
                  30):
        yield f"http://127.0.0.1:{number}", process


@contextlib.contextmanager
def nginx(workdir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The worker endpoint: nginx answering every request with ``200 done``."""
    number = port()
    folder = workdir / "nginx"
    folder.mkdir()
    conf = folder / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=folder, port=number))
    process = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(folder)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{number}/done"

    def answers() -> bool:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.read() == b"done"

    with _running(process, answers, "nginx", 10):
        yield url, process
