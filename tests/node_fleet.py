"""Node BullMQ apps (5 and 6) for the mixed-fleet tests: tests/node/fleet.js over a pipe.

The session installs ``tests/node`` from its lockfile (``npm ci``) the first time it needs it;
Node 20 and npm are on every test machine (.ci/run installs them where missing).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

NODE_DIR = Path(__file__).parent / "node"
MAJORS = ("5", "6")


def install_node_bullmq() -> None:
    """``npm ci`` in tests/node unless both majors are there already."""
    if all((NODE_DIR / "node_modules" / f"bullmq{major}").is_dir() for major in MAJORS):
        return
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise RuntimeError("the mixed-fleet tests need Node.js and npm on PATH")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--silent"], cwd=NODE_DIR,
                   check=True, timeout=600)


class NodeApp:
    """One Node process running one BullMQ major: its queues, workers and their reports."""

    def __init__(self, major: str, process: asyncio.subprocess.Process) -> None:
        self.major = major
        self._process = process
        self._ids = itertools.count(1)
        self._answers: dict[int, asyncio.Future[Any]] = {}
        self.events: list[dict[str, Any]] = []
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, major: str, redis_url: str, prefix: str = "bull") -> NodeApp:
        where = urlsplit(redis_url)
        process = await asyncio.create_subprocess_exec(
            "node", str(NODE_DIR / "fleet.js"), major, where.hostname or "127.0.0.1",
            str(where.port or 6379), prefix, cwd=NODE_DIR,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        return cls(major, process)

    async def _read(self) -> None:
        assert self._process.stdout is not None
        while line := await self._process.stdout.readline():
            message = json.loads(line)
            if "event" in message:
                self.events.append(message)
                continue
            answer = self._answers.pop(message["id"])
            if "error" in message:
                answer.set_exception(RuntimeError(f"node{self.major}: {message['error']}"))
            else:
                answer.set_result(message["ok"])
        for answer in self._answers.values():
            answer.set_exception(RuntimeError(f"node{self.major} exited"))

    async def call(self, op: str, **args: Any) -> Any:
        assert self._process.stdin is not None
        assert not {"id", "op"} & args.keys(), "id and op name the command itself"
        command_id = next(self._ids)
        answer = asyncio.get_running_loop().create_future()
        self._answers[command_id] = answer
        self._process.stdin.write(json.dumps({"id": command_id, "op": op, **args}).encode()
                                  + b"\n")
        return await asyncio.wait_for(answer, 30)

    def processed(self, queue: str) -> list[str]:
        """Ids of the jobs this app's workers completed on ``queue``, in order."""
        return [e["id"] for e in self.events
                if e["event"] == "processed" and e["queue"] == queue]

    def kill(self) -> None:
        """Die at once, as a crashed app does: its workers' locks are left to expire."""
        with contextlib.suppress(ProcessLookupError):
            self._process.send_signal(signal.SIGKILL)

    async def close(self) -> None:
        if self._process.returncode is None:
            with contextlib.suppress(RuntimeError, asyncio.TimeoutError):
                await self.call("close")
            self.kill()
        await self._process.wait()
        self._reader.cancel()
