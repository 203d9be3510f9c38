"""The Redis connections that every worker of one process shares.

bullmq gives each worker a blocking connection for the wait on its queue's marker and a pool
for its commands, so the proxy held a connection per registered queue and another per
concurrency slot. Here the HTTP-endpoint and WebSocket workers of a process share:

- ``pool``: at most ``POOL_SIZE`` connections (per node, on Cluster) for their commands;
  commands beyond that wait their turn;
- ``markers``: one blocking wait on the markers of every drained queue (``redis/markers.py``);
- ``stalled``: the stalled-job checks of every worker, on one timer (``stalled.py``).

A worker that must be listed by ``Queue.getWorkers()`` (a WebSocket push worker) waits for
its marker on a connection of its own instead (``own_markers``), named as Node BullMQ names a
worker's connection.
"""

from __future__ import annotations

import asyncio
import contextlib

from bullmq.redis_connection import RedisConnection

from bullmq_proxy.config import RedisSettings
from bullmq_proxy.redis.bullmq_connections import bullmq_connection
from bullmq_proxy.redis.connection import close_client, create_client
from bullmq_proxy.redis.markers import MarkerWatch
from bullmq_proxy.workers.stalled import StalledChecks

# Redis runs one command at a time: a few connections keep it busy, since the proxy's workers
# pipeline nothing across connections.
POOL_SIZE = 8
# Lanes of a marker wait (hot and cold, and keys whose Cluster node is not known yet).
MARKER_LANES = 3
# A marker wait of one key: one lane, whose connection is opened (and named) at the start.
OWN_MARKER_CONNECTIONS = 1


class WorkerConnections:
    """``close_wait``: how long ``close()`` waits for the workers still open to close (a
    ``MultiService`` stops its children all at once, so the Redis service may be told to stop
    while workers finish their jobs)."""

    def __init__(self, settings: RedisSettings, prefix: str, pool_size: int = POOL_SIZE,
                 close_wait: float = 10.0) -> None:
        self._settings = settings
        self._prefix = prefix
        self._close_wait = close_wait
        self._users: set[object] = set()
        self._unused = asyncio.Event()
        self._unused.set()
        self.pool = create_client(settings, blocking=True, bound=pool_size,
                                  name="bullmq-proxy:workers")
        self.markers = self._markers("bullmq-proxy:markers", MARKER_LANES)
        self.stalled = StalledChecks(self.pool)

    def attach(self, worker: object) -> None:
        self._users.add(worker)
        self._unused.clear()

    def detach(self, worker: object) -> None:
        self._users.discard(worker)
        if not self._users:
            self._unused.set()

    def bullmq_connection(self) -> RedisConnection:
        """A worker's bullmq connection, on the shared pool."""
        return bullmq_connection(self.pool)

    def own_markers(self, client_name: str) -> MarkerWatch:
        """A marker wait on a connection of its own, named ``client_name``; its owner closes
        it."""
        return self._markers(client_name, OWN_MARKER_CONNECTIONS, cooling=False)

    def _markers(self, client_name: str, connections: int, cooling: bool = True) -> MarkerWatch:
        blocking = create_client(self._settings, blocking=True, max_connections=connections,
                                 name=client_name)
        return MarkerWatch(blocking, self.pool, cluster=self._settings.cluster,
                           prefix=self._prefix, cooling=cooling)

    async def close(self) -> None:
        """Once every attached worker has closed (or ``close_wait`` has passed)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._unused.wait(), self._close_wait)
        await self.stalled.close()
        await self.markers.close()
        await close_client(self.pool)
