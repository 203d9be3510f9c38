"""The shared wait on many queues' markers, against a real Redis."""

from __future__ import annotations

import asyncio

from bullmq_proxy.config import RedisSettings
from bullmq_proxy.redis import markers
from bullmq_proxy.redis.connection import close_client, create_client
from bullmq_proxy.redis.embedded import free_port
from bullmq_proxy.redis.markers import MarkerWatch
from tests.redis_process import start_redis
from tests.support import until
from tests.ws_support import on_asyncio


class Listener:
    def __init__(self, accept: bool = True) -> None:
        self.scores: list[float] = []
        self.accept = accept

    def marker(self, score: float) -> bool:
        self.scores.append(score)
        return self.accept


def marker_key(n: int) -> str:
    return f"bull:markers-{n}:marker"


class Watch:
    """A MarkerWatch with its two clients, as WorkerConnections builds it."""

    def __init__(self, url: str, name: str = "test-markers") -> None:
        settings = RedisSettings(url=url)
        self.pool = create_client(settings, blocking=True, bound=4)
        self.watch = MarkerWatch(
            create_client(settings, blocking=True, max_connections=3, name=name), self.pool,
            cluster=False, prefix="bull")

    def listen(self, key: str, listener: Listener) -> Listener:
        self.watch.register(key, listener)
        self.watch.watch(key, listener)
        return listener

    async def close(self) -> None:
        await self.watch.close()
        await close_client(self.pool)


def armed(watch: MarkerWatch, key: str) -> bool:
    return any(key in lane.armed for lane in watch._lanes.values())


async def mark_once_armed(watch: MarkerWatch, sync_redis, key: str) -> None:
    """Add a marker once the wait's command includes ``key``."""
    await until(lambda: armed(watch, key), f"the wait armed with {key}")
    sync_redis.zadd(key, {"0": 0})


def names(sync_redis) -> list[str]:
    return [client["name"] for client in sync_redis.client_list()]


@on_asyncio
async def test_one_wait_wakes_the_listener_of_the_key_that_got_the_marker(
        redis_url, sync_redis):
    watch = Watch(redis_url)
    listeners = {n: watch.listen(marker_key(n), Listener()) for n in range(200)}
    try:
        await until(lambda: armed(watch.watch, marker_key(199)), "the wait armed")
        sync_redis.zadd(marker_key(17), {"0": 0})
        sync_redis.zadd(marker_key(150), {"1": 1234})
        await until(lambda: listeners[17].scores and listeners[150].scores, "both markers")
        assert listeners[17].scores == [0.0]
        assert listeners[150].scores == [1234.0]
        assert all(not listeners[n].scores for n in listeners if n not in (17, 150))
        # 200 waiting keys, one blocking connection.
        assert names(sync_redis).count("test-markers") == 1
        assert sync_redis.exists(marker_key(17), marker_key(150)) == 0
    finally:
        await watch.close()


@on_asyncio
async def test_a_key_watched_while_the_wait_is_armed_wakes_it(redis_url, sync_redis,
                                                              monkeypatch):
    # Without the wake key the first command would block for an hour.
    monkeypatch.setattr(markers, "BLOCK_SECONDS", 3600)
    watch = Watch(redis_url)
    try:
        watch.listen(marker_key(1), Listener())
        await until(lambda: armed(watch.watch, marker_key(1)), "the wait armed")
        late = watch.listen(marker_key(2), Listener())
        await mark_once_armed(watch.watch, sync_redis, marker_key(2))
        await until(lambda: late.scores, "the late key's marker")
    finally:
        await watch.close()
    assert not sync_redis.keys("*bmqp-wake*")


@on_asyncio
async def test_a_marker_the_listener_cannot_take_is_put_back(redis_url, sync_redis):
    watch = Watch(redis_url)
    busy = Listener(accept=False)
    try:
        watch.listen(marker_key(1), busy)
        await until(lambda: armed(watch.watch, marker_key(1)), "the wait armed")
        watch.watch.unwatch(marker_key(1), busy)  # as a worker with every slot busy does
        await mark_once_armed(watch.watch, sync_redis, marker_key(1))
        # Still armed with the key: the command in flight takes the marker...
        await until(lambda: busy.scores, "the marker")
        # ...and the other consumers of the queue find it again.
        await until(lambda: sync_redis.zscore(marker_key(1), "0") == 0, "the marker back")
    finally:
        await watch.close()


@on_asyncio
async def test_unregistered_keys_are_not_waited_on_and_a_replaced_listener_is_ignored(
        redis_url, sync_redis):
    watch = Watch(redis_url)
    old, new = Listener(), Listener()
    try:
        watch.listen(marker_key(1), old)
        watch.listen(marker_key(1), new)  # a worker replaced by another on the same queue
        watch.watch.unregister(marker_key(1), old)  # the old one closes after
        assert watch.watch.watched == 1
        await mark_once_armed(watch.watch, sync_redis, marker_key(1))
        await until(lambda: new.scores, "the marker")
        assert old.scores == []
        watch.watch.unregister(marker_key(1), new)
        assert watch.watch.watched == 0
    finally:
        await watch.close()


@on_asyncio
async def test_idle_keys_turn_cold_and_a_marker_brings_them_back(redis_url, sync_redis,
                                                                  monkeypatch):
    monkeypatch.setattr(markers, "COLD_AFTER", 0.2)
    monkeypatch.setattr(markers, "BLOCK_SECONDS", 1)
    watch = Watch(redis_url)
    listeners = [watch.listen(marker_key(n), Listener()) for n in range(20)]
    try:
        await until(lambda: set(watch.watch._lanes) == {"cold"}, "every key cold", 20)
        sync_redis.zadd(marker_key(3), {"0": 0})
        await until(lambda: listeners[3].scores, "the cold key's marker")
        await until(lambda: marker_key(3) not in watch.watch._cold, "the key hot again")
        assert "hot" in watch.watch._lanes
        # Two lanes, each on a connection of the watch.
        assert names(sync_redis).count("test-markers") <= 2
    finally:
        await watch.close()


@on_asyncio
async def test_close_ends_the_wait_every_time_and_leaves_nothing_behind(redis_url,
                                                                         sync_redis):
    for round_ in range(12):
        watch = Watch(redis_url, name=f"closing-{round_}")
        listener = watch.listen(marker_key(round_), Listener())
        await until(lambda w=watch, r=round_: armed(w.watch, marker_key(r)), "the wait armed")
        if round_ % 2:
            # A wake racing the close.
            watch.listen(marker_key(100 + round_), Listener())
        await asyncio.wait_for(watch.close(), 10)
        assert not watch.watch._lanes
        assert f"closing-{round_}" not in names(sync_redis)
        assert listener.scores == []
    assert not sync_redis.keys("*bmqp-wake*")


@on_asyncio
async def test_the_wait_outlives_a_redis_restart(tmp_path):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    server = await asyncio.to_thread(start_redis, port, tmp_path / "first")
    watch = Watch(url)
    try:
        listener = watch.listen(marker_key(1), Listener())
        await until(lambda: armed(watch.watch, marker_key(1)), "the wait armed")
        server.kill()
        server.wait()
        await asyncio.sleep(0.5)
        server = await asyncio.to_thread(start_redis, port, tmp_path / "second")
        adder = create_client(RedisSettings(url=url))
        await adder.zadd(marker_key(1), {"0": 0})
        await close_client(adder)
        await until(lambda: listener.scores, "the marker after the restart", 60)
    finally:
        await watch.close()
        server.kill()
        server.wait()
