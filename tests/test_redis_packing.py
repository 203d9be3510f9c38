"""Every asyncio connection the proxy opens packs its commands with hiredis, and what it
sends is what redis-py's own packing sends. The TLS and Sentinel suites run the whole proxy
on such connections."""

from __future__ import annotations

import pytest
import pytest_twisted
import redis.asyncio as aredis
from redis.asyncio.sentinel import SentinelManagedConnection, SentinelManagedSSLConnection
from redis.connection import PythonRespSerializer
from redis.exceptions import DataError

from bullmq_proxy.config import RedisSettings
from bullmq_proxy.redis.connection import close_client, create_client
from bullmq_proxy.redis.packing import HiredisPacking, packing
from tests.support import aio


@pytest.mark.parametrize(("settings", "underlying"), [
    (RedisSettings(url="redis://127.0.0.1:6390/0"), aredis.Connection),
    (RedisSettings(url="rediss://127.0.0.1:6390/0"), aredis.SSLConnection),
    (RedisSettings(url="unix:///tmp/redis.sock"), aredis.UnixDomainSocketConnection),
    (RedisSettings(host="127.0.0.1", port=6390), aredis.Connection),
    (RedisSettings(host="127.0.0.1", port=6390, tls=True), aredis.SSLConnection),
    (RedisSettings(sentinels=(("127.0.0.1", 26390),), sentinel_master="m"),
     SentinelManagedConnection),
    (RedisSettings(sentinels=(("127.0.0.1", 26390),), sentinel_master="m", tls=True),
     SentinelManagedSSLConnection),
])
def test_every_kind_of_connection_packs_with_hiredis(settings, underlying):
    client = create_client(settings)
    made = client.connection_pool.connection_class
    assert issubclass(made, HiredisPacking)
    assert made.__mro__[2] is underlying
    assert packing(made) is made


@pytest.mark.parametrize("args", [
    ("EVALSHA", "0" * 40, 2, "bull:q:wait", b"bull:q:active", 1.5, 1 / 3, -7, 10**30, "ü", ""),
    ("CLIENT SETNAME", "bull:cXVldWU="),
    (b"CLIENT SETNAME", b"x"),
    ("SET", bytearray(b"k\x00"), memoryview(b"v\xff")),
    ("RPUSH", "l", b"a", bytearray(b"b"), 3, memoryview(b"c")),
])
def test_the_bytes_are_redis_pys_own(args):
    connection = packing(aredis.Connection)()
    python = PythonRespSerializer(6000, connection.encoder.encode)
    assert b"".join(connection.pack_command(*args)) == b"".join(python.pack(*args))


@pytest_twisted.ensureDeferred
async def test_commands_pipelines_and_scripts_round_trip(redis_url):
    client = create_client(RedisSettings(url=redis_url))
    try:
        async def run():
            async with client.pipeline(transaction=False) as pipe:
                pipe.set("k:ü", "välue")
                pipe.hset("h", mapping={"f": 1.25, "n": 10**20, "b": b"\x00\x7f"})
                await pipe.execute()
            echo = client.register_script("return {ARGV[1], ARGV[2], KEYS[1]}")
            return (await client.get("k:ü"), await client.hgetall("h"),
                    await echo(keys=["k:ü"], args=[0.5, "ÿ"]))
        value, fields, echoed = await aio(run())
        assert value == "välue"
        assert fields == {"f": "1.25", "n": "100000000000000000000", "b": "\x00\x7f"}
        assert echoed == ["0.5", "ÿ", "k:ü"]
        with pytest.raises(DataError):
            await aio(client.set("k", None))
    finally:
        await aio(close_client(client))
