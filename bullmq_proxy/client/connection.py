"""One auto-reconnecting socket to the proxy, with request/reply correlation by id.

A request that is in flight when the socket drops fails with ``ConnectionLost`` rather than
being re-sent: the proxy may already have acted on it, and only the caller knows whether
repeating it is safe.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import websockets.asyncio.client
from websockets.exceptions import ConnectionClosed, InvalidStatus

# The client runs in asyncio applications, not under Twisted: it logs the stdlib way.
log = logging.getLogger("bullmq_proxy.client")


class ProxyClientError(Exception):
    """The proxy answered a request with an err reply."""

    def __init__(self, message: str, code: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


class ConnectionLost(Exception):
    """The socket closed before the reply arrived; the request may or may not have run."""


class Refused(Exception):
    """The proxy refused the upgrade (bad token, bad queue name): reconnecting won't help."""

    def __init__(self, status: int) -> None:
        super().__init__(f"the proxy refused the WebSocket with HTTP {status}")
        self.status = status


def socket_url(base: str, queue: str, suffix: str = "", query: str = "") -> str:
    """``base`` is the proxy's address (http, https, ws or wss)."""
    parts = urlsplit(base)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = f"{parts.path.rstrip('/')}/ws/queues/{quote(queue, safe='')}{suffix}"
    return urlunsplit((scheme, parts.netloc, path, query, ""))


class Connection:
    """Keeps a socket open (reconnecting with backoff) and hands over incoming frames."""

    def __init__(
        self, url: str, token: str, on_message: Callable[[dict[str, Any]], None], *,
        request_timeout: float = 15.0, max_backoff: float = 5.0,
    ) -> None:
        self._url = url
        self._token = token
        self._on_message = on_message
        self._request_timeout = request_timeout
        self._max_backoff = max_backoff
        self._socket: websockets.asyncio.client.ClientConnection | None = None
        self._connected = asyncio.Event()
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._last_id = 0
        self._closed = False
        self._failure: BaseException | None = None
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        backoff = 0.1
        while not self._closed:
            try:
                async with websockets.asyncio.client.connect(
                    self._url, additional_headers={"Authorization": f"Bearer {self._token}"},
                    max_size=None,
                ) as socket:
                    self._socket = socket
                    self._connected.set()
                    backoff = 0.1
                    async for raw in socket:
                        self._dispatch(raw)
            except InvalidStatus as err:
                if err.response.status_code in (400, 401, 403, 404):
                    self._fail(Refused(err.response.status_code))
                    return
                log.warning("WebSocket upgrade failed: %s", err)
            except (TimeoutError, OSError, ConnectionClosed) as err:
                log.info("WebSocket to %s lost: %s", self._url.split("?")[0], err)
            finally:
                self._socket = None
                self._connected.clear()
                self._drop_pending(ConnectionLost("the socket closed before the reply"))
            if not self._closed:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)

    def _fail(self, failure: BaseException) -> None:
        self._failure = failure
        self._closed = True
        self._connected.set()  # wake waiters so they see the failure

    def _drop_pending(self, failure: BaseException) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(failure)

    def _dispatch(self, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            log.warning("Ignoring a frame that is not JSON")
            return
        waiting = self._pending.pop(message.get("id"), None) if isinstance(message, dict) \
            else None
        if waiting is not None:
            if not waiting.done():
                waiting.set_result(message.get("data"))
        elif isinstance(message, dict):
            self._on_message(message)

    async def _open_socket(self) -> websockets.asyncio.client.ClientConnection:
        await self._connected.wait()
        if self._failure is not None:
            raise self._failure
        if self._socket is None:
            raise ConnectionLost("the client is closed")
        return self._socket

    async def wait_open(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._open_socket(), timeout or self._request_timeout)

    async def send(self, message_id: Any, data: Any) -> None:
        socket = await self._open_socket()
        await socket.send(json.dumps({"id": message_id, "data": data}))

    async def request(self, data: Any) -> Any:
        """Send ``data`` and wait for its reply's ``data``."""
        return await asyncio.wait_for(self._request(data), self._request_timeout)

    async def _request(self, data: Any) -> Any:
        socket = await self._open_socket()
        self._last_id += 1
        message_id = self._last_id
        reply = asyncio.get_running_loop().create_future()
        self._pending[message_id] = reply
        try:
            await socket.send(json.dumps({"id": message_id, "data": data}))
            return await reply
        finally:
            self._pending.pop(message_id, None)

    async def close(self) -> None:
        self._closed = True
        if self._socket is not None:
            await self._socket.close()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def unwrap(reply: Any) -> Any:
    """The ``ok`` value of a command reply, or its ``err`` raised."""
    if isinstance(reply, dict) and "err" in reply:
        err = reply["err"]
        if isinstance(err, dict):
            raise ProxyClientError(str(err.get("message")), err.get("code"), err.get("field"))
        raise ProxyClientError(str(err))
    return reply.get("ok") if isinstance(reply, dict) else None
