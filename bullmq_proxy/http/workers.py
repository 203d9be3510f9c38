"""REST handlers of the worker registry: register, list, inspect and remove HTTP workers."""

from __future__ import annotations

import json
from typing import Any

from bullmq_proxy.config import Config
from bullmq_proxy.errors import NOT_FOUND, ProxyError
from bullmq_proxy.http.router import Call, Reply, Route
from bullmq_proxy.workers.metadata import parse_metadata
from bullmq_proxy.workers.service import WorkersService

# Header values that may hold credentials are never echoed back.
SECRET_HINTS = ("auth", "token", "key", "secret", "cookie", "password", "signature")
REDACTED = "[redacted]"


def redact(stored: dict[str, Any]) -> dict[str, Any]:
    endpoint = dict(stored.get("endpoint") or {})
    if "signingSecret" in endpoint:
        endpoint["signingSecret"] = REDACTED
    headers = endpoint.get("headers")
    if isinstance(headers, dict):
        endpoint["headers"] = {
            name: REDACTED if any(hint in name.lower() for hint in SECRET_HINTS) else value
            for name, value in headers.items()
        }
    return {**stored, "endpoint": endpoint}


class WorkerRoutes:
    def __init__(self, config: Config, workers: WorkersService) -> None:
        self._config = config
        self._workers = workers
        self._store = workers.store

    async def register(self, call: Call) -> Any:
        metadata = parse_metadata(call.json(), self._config)
        await self._store.save(metadata)
        return Reply(text="OK")

    async def list(self, call: Call) -> Any:
        listed: dict[str, Any] = {}
        for queue, raw in (await self._store.all()).items():
            try:
                listed[queue] = json.loads(raw)["endpoint"]["url"]
            except (ValueError, KeyError, TypeError):
                listed[queue] = None
        return listed

    async def get(self, call: Call) -> Any:
        queue = call.params["queueName"]
        raw = await self._store.get(queue)
        if raw is None:
            raise ProxyError(NOT_FOUND, f"No worker is registered for queue {queue!r}.",
                             "queueName")
        running = self._workers.workers.get(queue)
        state: dict[str, Any] = {"running": running is not None}
        if running is not None:
            live = running.dispatcher.state
            breaker = running.dispatcher.breaker
            state.update(inFlight=live.in_flight, completed=live.completed, failed=live.failed,
                         lastError=live.last_error, lastErrorAt=live.last_error_at,
                         circuit={"state": breaker.state, "failures": breaker.failures,
                                  "retryIn": breaker.retry_in()})
        return {**redact(json.loads(raw)), "state": state}

    async def remove(self, call: Call) -> Any:
        queue = call.params["queueName"]
        if not await self._store.remove(queue):
            raise ProxyError(NOT_FOUND, f"No worker is registered for queue {queue!r}.",
                             "queueName")
        return Reply(text="OK")


def worker_routes(config: Config, workers: WorkersService) -> list[Route]:
    w = WorkerRoutes(config, workers)
    return [
        Route(b"POST", "/workers", w.register),
        Route(b"GET", "/workers", w.list),
        Route(b"GET", "/workers/{queueName}", w.get),
        Route(b"DELETE", "/workers/{queueName}", w.remove),
    ]
