"""Which queues have an HTTP-endpoint worker registered: the registry hash, read only."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bullmq_proxy.redaction import redact_url


class RegisteredWorkers:
    def __init__(self, client: Any, key: str) -> None:
        self._client = client
        self._key = key

    async def urls(self, queues: list[str]) -> Mapping[str, str | None]:
        """The endpoint URL registered for each of ``queues`` (None for none)."""
        raws = await self._client.hmget(self._key, queues)
        return {queue: _url(raw) for queue, raw in zip(queues, raws, strict=True)}


def _url(raw: str | None) -> str | None:
    if raw is None:
        return None
    try:
        return redact_url(json.loads(raw)["endpoint"]["url"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
