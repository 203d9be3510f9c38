"""redis-server processes for tests, and waiting on them."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from bullmq_proxy.redis.embedded import find_redis_server, redis_server_argv


def wait_for_redis(check: Callable[[], Any], what: str, timeout: float = 20,
                   process: subprocess.Popen | None = None) -> None:
    """Poll ``check`` until it is truthy; Redis errors on the way count as "not yet"."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.RedisError):
            if check():
                return
        if time.monotonic() > deadline or (process is not None and process.poll() is not None):
            raise RuntimeError(f"{what} did not happen in time")
        time.sleep(0.05)


def start_redis(port: int, data_dir: str | Path, *, persistent: bool = False) -> subprocess.Popen:
    """A loopback redis-server on ``port``, answering PING when this returns."""
    argv = redis_server_argv(find_redis_server(), port, str(data_dir), persistent=persistent)
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    try:
        wait_for_redis(client.ping, f"redis-server on port {port} starting", process=process)
    except RuntimeError:
        process.kill()
        raise
    finally:
        client.close()
    return process
