"""One blocking wait on the markers of many queues.

A drained bullmq worker waits for its queue's marker (a sorted set that BullMQ's scripts fill
when a job may be taken) with BZPOPMIN on a connection of its own: N idle queues hold N
connections. BZPOPMIN takes several keys and answers with the one that got a member, so here
one command waits for every drained queue of the process, and its answer says which worker to
wake. On Redis Cluster a command's keys must share a slot: keys are grouped by slot, each
node's groups get lanes of their own, and a lane with several groups waits on each in turn.

Each command in flight is the lane's *arming*: a key that starts to wait after it was sent is
not in it. The lane is then woken by a member added to a key of its own (its wake key, in the
slot of the keys it waits on) and arms again with the new key. Arming costs Redis and the
proxy in proportion to its keys, so each worker's key is *hot* while its queue is in use and
turns *cold* after ``COLD_AFTER`` seconds without a marker: the cold lane, holding most keys
of a mostly idle proxy, is armed again only when a key turns cold or gets a marker.

A marker goes to its queue's worker; one that cannot act on it (stopping, or every slot busy)
is put back, so that the queue's other consumers (another proxy, Node workers) still see it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable
from typing import Protocol

import attrs
from redis.crc import key_slot
from twisted.logger import Logger

from bullmq_proxy.redis.closing import CANCEL_AGAIN_AFTER
from bullmq_proxy.redis.connection import RedisClient, close_client

log = Logger(namespace="bullmq_proxy.redis.markers")

# Redis's own ceiling for bullmq's wait (its maximumBlockTimeout): how long a lane goes
# without hearing from Redis, however idle.
BLOCK_SECONDS = 10
# On a lane waiting on keys of several Cluster slots, each slot's turn.
TURN_SECONDS = 0.1
COLD_AFTER = 60.0
RETRY_BASE, RETRY_CAP = 0.1, 5.0
HOT, COLD = "hot", "cold"


class MarkerListener(Protocol):
    def marker(self, score: float) -> bool:
        """The queue's marker was taken, with this score (0, or the ms timestamp of a delayed
        job). True when the listener acts on it; False puts it back."""


@attrs.define(eq=False)
class _Lane:
    name: str
    keys: set[str] = attrs.Factory(set)
    armed: frozenset[str] = frozenset()
    wake: str | None = None
    long: bool = False
    woken: bool = False
    task: asyncio.Future[None] | None = None


def _hash_tag_end(key: str) -> int:
    """The index of the ``}`` closing the key's hash tag, or -1 when it has none."""
    start = key.find("{")
    end = key.find("}", start + 1) if start > -1 else -1
    return end if end > start + 1 else -1


class MarkerWatch:
    """Wakes registered listeners when their queue's marker gets a member.

    ``register`` a listener for a marker key once; ``watch`` the key while the listener waits
    for a marker (its worker is drained), ``unwatch`` it otherwise. A key has one listener:
    the last registered (a replaced worker may close after its successor started), and only
    that one's calls count. ``blocking`` is a client
    of this watch's own; ``pool`` serves its few other commands. ``prefix`` names the wake keys
    of keys without a hash tag. Without ``cooling``, keys never turn cold (a watch of one
    key)."""

    def __init__(self, blocking: RedisClient, pool: RedisClient, *, cluster: bool,
                 prefix: str, cooling: bool = True) -> None:
        self._blocking = blocking
        self._cooling = cooling
        self._pool = pool
        self._cluster = cluster
        self._wake_suffix = f"bmqp-wake:{uuid.uuid4().hex[:16]}"
        self._prefix = prefix
        self._listeners: dict[str, MarkerListener] = {}
        self._lane_of: dict[str, str] = {}
        self._last_seen: dict[str, float] = {}
        self._cold: set[str] = set()
        self._lanes: dict[str, _Lane] = {}
        self._wakes: set[str] = set()
        self._writes: set[asyncio.Future[object]] = set()
        self._cooled_at = time.monotonic()
        self._closed = False

    @property
    def watched(self) -> int:
        return len(self._lane_of)

    async def connect(self) -> None:
        """Open the blocking connection now (it is named when it connects)."""
        await self._blocking.ping()

    def register(self, key: str, listener: MarkerListener) -> None:
        self._listeners[key] = listener

    def unregister(self, key: str, listener: MarkerListener) -> None:
        if self._listeners.get(key) is listener:
            self.unwatch(key, listener)
            del self._listeners[key]

    def watch(self, key: str, listener: MarkerListener) -> None:
        if self._listeners.get(key) is not listener:
            return
        self._last_seen[key] = time.monotonic()
        if key not in self._lane_of and not self._closed:
            self._place(key, HOT)

    def unwatch(self, key: str, listener: MarkerListener) -> None:
        if self._listeners.get(key) is not listener:
            return
        name = self._lane_of.pop(key, None)
        self._last_seen.pop(key, None)
        self._cold.discard(key)
        lane = self._lanes.get(name) if name is not None else None
        if lane is not None:
            lane.keys.discard(key)

    async def close(self) -> None:
        """Stop every lane (their commands are cancelled), delete the wake keys, close the
        blocking client."""
        self._closed = True
        tasks = {lane.task for lane in self._lanes.values() if lane.task is not None}
        # redis-py may lose the cancellation of a blocking read that races its reply.
        while tasks:
            for task in tasks:
                task.cancel()
            _, tasks = await asyncio.wait(tasks, timeout=CANCEL_AGAIN_AFTER)
        if self._writes:
            await asyncio.wait(self._writes, timeout=1)
        if self._wakes:
            try:
                await asyncio.wait_for(self._pool.delete(*self._wakes), 2)
            except Exception:  # Redis away: a stray wake key only wakes a lane
                log.info("Marker wait: wake keys left in Redis ({count})",
                         count=len(self._wakes))
        await close_client(self._blocking)

    # --- lanes ---------------------------------------------------------------------------

    def _lane_name(self, key: str, tier: str) -> str:
        if not self._cluster:
            return tier
        try:
            node = self._blocking.nodes_manager.get_node_from_slot(  # type: ignore[union-attr]
                key_slot(key.encode())).name
        except Exception:  # slots not known before the first command
            node = "?"
        return f"{tier} {node}"

    def _place(self, key: str, tier: str) -> None:
        if tier == COLD:
            self._cold.add(key)
        else:
            self._cold.discard(key)
        name = self._lane_name(key, tier)
        self._lane_of[key] = name
        lane = self._lanes.get(name)
        if lane is None:
            lane = self._lanes[name] = _Lane(name)
            lane.task = asyncio.ensure_future(self._run(lane))
        lane.keys.add(key)
        if lane.long and lane.armed and key not in lane.armed:
            self._wake(lane)

    def _move(self, key: str, tier: str) -> None:
        old = self._lanes.get(self._lane_of.get(key, ""))
        if old is not None:
            old.keys.discard(key)
        self._place(key, tier)

    def _wake(self, lane: _Lane) -> None:
        if lane.woken or lane.wake is None:
            return
        lane.woken = True
        self._write(self._pool.zadd(lane.wake, {"wake": 0}))

    def _write(self, command: Awaitable[object]) -> None:
        write = asyncio.ensure_future(command)
        self._writes.add(write)
        write.add_done_callback(self._written)

    def _written(self, write: asyncio.Future[object]) -> None:
        self._writes.discard(write)
        if not write.cancelled() and write.exception() is not None:
            log.warn("Marker wait: a write failed: {error}", error=repr(write.exception()))

    def _wake_key(self, key: str) -> str | None:
        """A key in ``key``'s slot, of this watch only."""
        end = _hash_tag_end(key)
        if end == -1 and self._cluster:
            return None  # no key of ours can share its slot: its lane is not woken
        base = key[:end + 1] if end > -1 else self._prefix
        wake = f"{base}:{self._wake_suffix}"
        self._wakes.add(wake)
        return wake

    def _groups(self, keys: set[str]) -> list[list[str]]:
        if not self._cluster:
            return [list(keys)]
        by_slot: dict[int, list[str]] = {}
        for key in keys:
            by_slot.setdefault(key_slot(key.encode()), []).append(key)
        return list(by_slot.values())

    async def _run(self, lane: _Lane) -> None:
        turn = failures = 0
        try:
            while not self._closed and lane.keys:
                groups = self._groups(lane.keys)
                keys = groups[turn % len(groups)]
                turn += 1
                lane.long = len(groups) == 1
                wake = self._wake_key(keys[0])
                lane.armed, lane.wake, lane.woken = frozenset(keys), wake, False
                try:
                    popped = await self._blocking.bzpopmin(
                        keys if wake is None else [*keys, wake],
                        BLOCK_SECONDS if lane.long else TURN_SECONDS)
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # Redis away: wait, then again
                    failures += 1
                    if failures == 1:
                        log.warn("Marker wait ({lane}) failed, retrying: {error}",
                                 lane=lane.name, error=f"{error.__class__.__name__}: {error}")
                    await asyncio.sleep(min(RETRY_CAP, RETRY_BASE * 2 ** failures))
                    continue
                finally:
                    lane.armed, lane.wake = frozenset(), None
                if failures:
                    log.info("Marker wait ({lane}) works again", lane=lane.name)
                    failures = 0
                try:
                    if popped and popped[0] != wake:
                        self._deliver(popped[0], popped[1], float(popped[2]))
                    self._cool()
                except Exception:  # a listener's bug must not end the wait of every queue
                    log.failure("Marker wait ({lane}): delivering a marker failed",
                                lane=lane.name)
        finally:
            if self._lanes.get(lane.name) is lane:
                del self._lanes[lane.name]

    def _deliver(self, key: str, member: str, score: float) -> None:
        listener = self._listeners.get(key)
        if listener is None or not listener.marker(score):
            self._write(self._pool.zadd(key, {member: score}))
        if key in self._lane_of:  # the listener still waits: its queue is in use again
            self._last_seen[key] = time.monotonic()
            if key in self._cold:
                self._move(key, HOT)

    def _cool(self) -> None:
        """Move the keys that waited ``COLD_AFTER`` seconds without a marker to the cold
        lanes, all at once (each move may cost the cold lane an arming)."""
        now = time.monotonic()
        if not self._cooling or now - self._cooled_at < COLD_AFTER / 4:
            return
        self._cooled_at = now
        for key, seen in list(self._last_seen.items()):
            if now - seen >= COLD_AFTER and key not in self._cold and key in self._lane_of:
                self._move(key, COLD)
