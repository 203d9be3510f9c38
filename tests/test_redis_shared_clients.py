"""What lets every worker share a few connections: bounded clients, and bullmq connections
whose scripts are registered once per client."""

from __future__ import annotations

import asyncio

import pytest

from bullmq_proxy.config import RedisSettings
from bullmq_proxy.redis.bullmq_connections import bullmq_connection
from bullmq_proxy.redis.connection import close_client, create_client
from tests.ws_support import on_asyncio


def names(sync_redis) -> list[str]:
    return [client["name"] for client in sync_redis.client_list()]


@on_asyncio
async def test_a_bounded_client_holds_no_more_connections_than_its_bound(redis_url,
                                                                        sync_redis):
    client = create_client(RedisSettings(url=redis_url), blocking=True, bound=3,
                           name="bounded")
    try:
        async def slow(n: int) -> str:
            # Each holds its connection for a while, as a script does.
            return await client.eval("return redis.call('ECHO', ARGV[1])", 0, str(n))

        async def piped(n: int) -> list[object]:
            pipe = client.pipeline(transaction=False)
            pipe.set(f"bounded-{n}", n)
            pipe.get(f"bounded-{n}")
            return await pipe.execute()

        results = await asyncio.gather(*(slow(n) for n in range(200)),
                                       *(piped(n) for n in range(50)))
        assert results[:200] == [str(n) for n in range(200)]
        assert results[200:] == [[True, str(n)] for n in range(50)]
        assert 1 <= names(sync_redis).count("bounded") <= 3
    finally:
        await close_client(client)


@pytest.mark.parametrize("bound", [None, 2])
@on_asyncio
async def test_each_bullmq_connection_has_its_own_commands_over_shared_scripts(redis_url,
                                                                              bound):
    client = create_client(RedisSettings(url=redis_url), blocking=True, bound=bound)
    try:
        first, second = bullmq_connection(client), bullmq_connection(client)
        assert first.commands is not second.commands
        assert first.commands["moveToActive"] is second.commands["moveToActive"]
        first.commands["moveToActive"] = None
        assert second.commands["moveToActive"] is not None
        assert first.conn is client
        assert await second.commands["extendLocks"](keys=["bull:q:stalled"],
                                                    args=["bull:q:", b"\x90", b"\x90", 1]) \
            == []
    finally:
        await close_client(client)
