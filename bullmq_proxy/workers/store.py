"""The worker registry in Redis: a hash of registrations plus a stream announcing changes.

Every write changes the hash and appends to the stream in one Lua script, so no instance can
see a change without its announcement, or an announcement before its change.
"""

from __future__ import annotations

import redis.asyncio as aredis

from bullmq_proxy.workers.metadata import WorkerMetadata

# KEYS: hash, stream. ARGV: queue, metadata JSON, stream max length.
UPSERT = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'worker', ARGV[1])
"""

# KEYS: hash, stream. ARGV: queue, stream max length. Announces only a real removal.
REMOVE = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then
  return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'worker', ARGV[1])
end
return false
"""


class WorkerStore:
    def __init__(self, client: aredis.Redis, key: str, stream: str, max_len: int) -> None:
        self._client = client
        self.key = key
        self.stream = stream
        self._max_len = max_len
        self._upsert = client.register_script(UPSERT)
        self._remove = client.register_script(REMOVE)

    async def save(self, metadata: WorkerMetadata) -> str:
        """Store a registration (replacing the queue's previous one); returns the event id."""
        return await self._upsert(
            keys=[self.key, self.stream], args=[metadata.queue, metadata.raw, self._max_len]
        )

    async def remove(self, queue: str) -> bool:
        """False when the queue had no worker."""
        return bool(await self._remove(keys=[self.key, self.stream],
                                       args=[queue, self._max_len]))

    async def get(self, queue: str) -> str | None:
        return await self._client.hget(self.key, queue)

    async def all(self) -> dict[str, str]:
        return await self._client.hgetall(self.key)

    async def first_event_id(self) -> str | None:
        first = await self._client.xrange(self.stream, "-", "+", count=1)
        return first[0][0] if first else None

    async def last_event_id(self) -> str:
        """The id to follow the stream from; "0" when it is empty."""
        last = await self._client.xrevrange(self.stream, "+", "-", count=1)
        return last[0][0] if last else "0"
