"""Redis client names for the proxy's bullmq objects, spelled as Node BullMQ spells them.

Python bullmq names a connection ``<prefix>:<queue name>``; Redis refuses ``CLIENT SETNAME``
for a name with a space, a newline or another character outside ``!``..``~``, so a queue the
REST API accepts (``test queue``, ``émails``) would get a worker that can never connect.
Node BullMQ names it ``<prefix>:<base64 of the queue name>``, which Redis always accepts, and
its ``Queue.getWorkers()`` looks for exactly that. Using Node's spelling fixes the first and
lets each side list the other's workers.
"""

from __future__ import annotations

import base64
from typing import Any


def node_client_name(prefix: str, queue_name: str, suffix: str = "") -> str:
    encoded = base64.b64encode(queue_name.encode("utf-8")).decode("ascii")
    return f"{prefix}:{encoded}{suffix}"


def name_clients_like_node(backend: Any, prefix: str, queue_name: str) -> None:
    """Make a bullmq ``RedisBackend`` name its clients (and match them in ``get_workers``)
    the Node way. An instance attribute, so other backends keep bullmq's method."""

    def client_name(suffix: str | None = None) -> str:
        return node_client_name(prefix, queue_name, suffix or "")

    backend.clientName = client_name
