"""A bare WebSocket test client for the proxy (websockets, on asyncio)."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import pytest_twisted
import websockets.asyncio.client
from websockets.asyncio.client import ClientConnection

from tests.support import TOKEN, aio


class Refused(Exception):
    """The server answered the upgrade with an HTTP error."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


class WsClient:
    """Sends exact frames and reads replies in order."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self._sending: set[asyncio.Future[None]] = set()

    def send(self, frame: Any) -> None:
        raw = frame if isinstance(frame, bytes | str) else json.dumps(frame)
        sending = asyncio.ensure_future(self.connection.send(raw))
        self._sending.add(sending)
        sending.add_done_callback(self._sending.discard)

    async def recv(self, timeout: float = 10) -> Any:
        return json.loads(await asyncio.wait_for(self.connection.recv(), timeout))

    async def call(self, message_id: Any, fn: str, *args: Any) -> Any:
        self.send({"id": message_id, "data": {"fn": fn, "args": list(args)}})
        reply = await self.recv()
        assert reply["id"] == message_id
        return reply["data"]

    async def closed(self, timeout: float = 10) -> tuple[int | None, str | None]:
        """The close code and reason the server sent, once the socket is closed."""
        await asyncio.wait_for(self.connection.wait_closed(), timeout)
        return self.connection.close_code, self.connection.close_reason

    async def close(self) -> None:
        await self.connection.close()


async def connect(base: str, path: str, token: str | None = TOKEN,
                  headers: dict[str, str] | None = None) -> WsClient:
    url = base + path
    if token is not None:
        url += ("&" if "?" in url else "?") + "token=" + quote(token)
    connection = await websockets.asyncio.client.connect(
        url, additional_headers=headers or {}, open_timeout=10, ping_interval=None,
        max_size=None)
    return WsClient(connection)


async def raw_upgrade(base: str, path: str, headers: dict[str, str] | None = None
                      ) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the server's answer to a hand-written upgrade."""
    host, port = base.removeprefix("ws://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    lines = [
        f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket",
        "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        status_line, *header_lines = head.decode().split("\r\n")
        found = {}
        for line in header_lines:
            if ":" in line:
                name, value = line.split(":", 1)
                found[name.strip().lower()] = value.strip()
        body = b""
        if "content-length" in found:
            body = await asyncio.wait_for(reader.readexactly(int(found["content-length"])), 10)
        elif found.get("transfer-encoding") == "chunked":
            while size := int(await asyncio.wait_for(reader.readline(), 10), 16):
                body += await asyncio.wait_for(reader.readexactly(size + 2), 10)
            body = body.replace(b"\r\n", b"")
        return int(status_line.split()[1]), found, body
    finally:
        writer.close()


def on_asyncio(test: Callable[..., Awaitable[Any]]) -> Any:
    """Run an asyncio test body on the reactor's loop, fixtures included."""

    @functools.wraps(test)
    async def run(*args: Any, **kwargs: Any) -> Any:
        return await aio(test(*args, **kwargs))

    return pytest_twisted.ensureDeferred(run)
