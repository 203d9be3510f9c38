"""Queue objects, kept in a bounded LRU so that no request builds one."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

import redis.asyncio as aredis
from bullmq import Queue

from bullmq_proxy.redis.client_names import name_clients_like_node
from bullmq_proxy.redis.layout import read_layout, speak_layout


class QueueRegistry:
    """The bullmq ``Queue`` for each name, all sharing the proxy's pooled Redis client.

    Dropping an evicted Queue releases nothing: its connection is the shared client, whose
    pool outlives every Queue, so eviction needs no close call.
    """

    def __init__(self, client: aredis.Redis, prefix: str, size: int, layout: str = "auto",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self.prefix = prefix
        self.layout = layout
        self._size = size
        self._clock = clock
        self._queues: OrderedDict[str, Queue] = OrderedDict()
        self._used: dict[str, float] = {}

    @property
    def client(self) -> aredis.Redis:
        """The pooled client every Queue of this registry uses."""
        return self._client

    def get(self, name: str, *, use: bool = True) -> Queue:
        """The queue ``name``; ``use=False`` for a look that does not count as serving it."""
        queue = self._queues.get(name)
        if queue is None:
            queue = Queue(name, {"connection": self._client, "prefix": self.prefix})
            name_clients_like_node(queue.backend, self.prefix, name)
            speak_layout(queue.backend, self.layout)
            self._queues[name] = queue
            if len(self._queues) > self._size:
                evicted, _ = self._queues.popitem(last=False)
                self._used.pop(evicted, None)
        else:
            self._queues.move_to_end(name)
        if use:
            self._used[name] = self._clock()
        return queue

    async def layout_of(self, queue: Queue) -> int:
        """The Redis layout (5 or 6) ``queue`` is in now; see ``redis/layout.py``."""
        return await read_layout(self._client, queue.keys, self.layout)

    def used_within(self, seconds: float) -> list[str]:
        """The cached queues used in the last ``seconds``: a set no larger than the cache,
        whatever names clients try."""
        since = self._clock() - seconds
        return [name for name, used in self._used.items() if used >= since]

    def key(self, queue_name: str, *parts: str) -> str:
        """A BullMQ key of this queue, e.g. ``key(q, job_id, "lock")``."""
        return ":".join((self.prefix, queue_name, *parts))

    def __len__(self) -> int:
        return len(self._queues)
