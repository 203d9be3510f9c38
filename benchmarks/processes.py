"""The processes a benchmark run starts (Redis, the proxy, nginx) and what /proc says of them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import attrs
import redis

from bullmq_proxy.redis.embedded import find_redis_server, free_port, redis_server_argv

REPO = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"
TICKS = os.sysconf("SC_CLK_TCK")


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
    port = free_port()
    data = workdir / "redis"
    data.mkdir()
    argv = redis_server_argv(find_redis_server(), port, str(data), persistent=False)
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        _wait_until(client.ping, "redis-server", process, 10)
        client.close()
        yield url, process
    finally:
        _stop(process)


@contextlib.contextmanager
def proxy(
    workdir: Path, redis_url: str, processes: int = 1
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``twistd -n bullmq-proxy`` on a free port; yields its base URL and the process."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "REDIS_URL": redis_url,
        "AUTH_TOKENS": TOKEN,
        "DATA_DIR": str(workdir / "proxy-data"),
    }
    argv = [
        str(Path(sys.executable).with_name("twistd")), "-n", "--pidfile=",
        "--logfile", str(workdir / "proxy.log"),
        "bullmq-proxy", "--listen", f"tcp:{port}:interface=127.0.0.1",
    ]
    if processes > 1:
        argv += ["--processes", str(processes)]
    process = subprocess.Popen(argv, env=env, cwd=workdir, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        # Every process must listen before the load starts: wrk opens its connections once.
        if listening_sockets(port) < processes:
            return False
        with urllib.request.urlopen(base + "/", timeout=1) as response:
            return response.status == 200

    try:
        _wait_until(answers, "the proxy", process, 30)
        yield base, process
    finally:
        _stop(process)


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
def bare_web() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``benchmarks/bare_web.py`` on a free port; yields its base URL and the process."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "benchmarks.bare_web", str(port)],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_until(lambda: listening_sockets(port) == 1, "the bare Twisted Web server",
                    process, 10)
        yield f"http://127.0.0.1:{port}", process
    finally:
        _stop(process)


@contextlib.contextmanager
def nginx(workdir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The worker endpoint: nginx answering every request with ``200 done``."""
    port = free_port()
    folder = workdir / "nginx"
    folder.mkdir()
    conf = folder / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=folder, port=port))
    process = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(folder)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/done"

    def answers() -> bool:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.read() == b"done"

    try:
        _wait_until(answers, "nginx", process, 10)
        yield url, process
    finally:
        _stop(process)
