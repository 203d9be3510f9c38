"""Workload C's client, in a process of its own: ``python -m benchmarks.wsclient MODE URL N``.

``add``: N add commands pipelined over one WebSocket, then wait for all N replies.
``worker``: a push worker that answers every job it is sent until N were answered.
Prints one JSON object; exits non-zero when the proxy refuses the WebSocket.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from typing import Any
from urllib.parse import urlsplit

from autobahn.asyncio.websocket import WebSocketClientFactory, WebSocketClientProtocol

from benchmarks.processes import TOKEN


class Client(WebSocketClientProtocol):
    mode: str
    count: int
    finished: asyncio.Future[dict[str, Any]]

    def onOpen(self) -> None:
        self.answered = 0
        self.errors = 0
        self.started = time.perf_counter()
        if self.mode == "add":
            for n in range(self.count):
                message = {"id": n, "data": {"fn": "add", "args": ["bench", {"n": n}, {}]}}
                self.sendMessage(json.dumps(message).encode())

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        message = json.loads(payload)
        if self.mode == "worker":
            self.sendMessage(json.dumps({"id": message.get("id"),
                                         "data": {"result": "done"}}).encode())
        elif "err" in (message.get("data") or {}):
            self.errors += 1
        self.answered += 1
        if self.answered >= self.count and not self.finished.done():
            self.finished.set_result({
                "jobs": self.answered, "errors": self.errors,
                "seconds": time.perf_counter() - self.started,
            })

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.finished.done():
            self.finished.set_exception(RuntimeError(f"WebSocket closed: {code} {reason}"))


async def run(mode: str, url: str, count: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[dict[str, Any]] = loop.create_future()
    factory = WebSocketClientFactory(f"{url}?token={TOKEN}",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    Client.mode, Client.count, Client.finished = mode, count, finished
    factory.protocol = Client
    parts = urlsplit(url)
    transport, _ = await loop.create_connection(factory, parts.hostname, parts.port)
    try:
        return await asyncio.wait_for(finished, timeout=120)
    finally:
        transport.close()


def main() -> None:
    mode, url, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    result = asyncio.run(run(mode, url, count))
    own = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_s"] = own.ru_utime + own.ru_stime
    print(json.dumps(result))


if __name__ == "__main__":
    main()
