"""Running ``twistd -n bullmq-proxy`` as a real process, for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import attrs

REPO = Path(__file__).resolve().parent.parent
TWISTD = [str(Path(sys.executable).parent / "twistd")]


def proxy_env(**extra: str) -> dict[str, str]:
    """The test's environment minus any Redis/auth settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REDIS_", "AUTH_", "PORT", "QUEUE_", "LISTEN_"))}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


@attrs.define
class TwistdProxy:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def request(self, method: str, path: str, body: Any = None,
                token: str | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw, status, ctype = response.read(), response.status, response.headers
        except urllib.error.HTTPError as err:
            raw, status, ctype = err.read(), err.code, err.headers
        if "json" in (ctype.get("content-type") or ""):
            return status, json.loads(raw)
        return status, raw.decode()

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"twistd exited early:\n{self.output()}")
            try:
                if self.request("GET", "/")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"twistd did not answer in time:\n{self.output()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"twistd did not stop:\n{self.output()}") from None
        return self.process.returncode


def run_twistd(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """Run twistd to completion (for start-up errors)."""
    return subprocess.run(
        [*TWISTD, "--pidfile=", "-n", *args], env=env, cwd=cwd, capture_output=True,
        timeout=60, check=False, text=True,
    )


def start_twistd(args: list[str], env: dict[str, str], cwd: Path, port: int) -> TwistdProxy:
    log_path = cwd / f"twistd-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*TWISTD, "--pidfile=", "-n", "bullmq-proxy", "--listen", f"tcp:{port}", *args],
            env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
        )
    return TwistdProxy(process, port, log_path)
