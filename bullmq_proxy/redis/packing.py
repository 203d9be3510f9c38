"""Commands packed by hiredis, in C.

redis-py's blocking client packs its commands with hiredis when hiredis is installed; its
asyncio connections always pack in Python, argument by argument, which was 15 to 20 % of a
worker's CPU per job (bullmq's ``moveToFinished`` sends 25 arguments). The proxy's
connections use the blocking client's serializer: the bytes on the wire are the same.
"""

from __future__ import annotations

import functools
from typing import Any

import hiredis
from redis.connection import HiredisRespSerializer

_SERIALIZER = HiredisRespSerializer()


class HiredisPacking:
    """Mixed into a redis-py asyncio connection class, before it."""

    def pack_command(self, *args: Any) -> list[bytes]:
        # As redis-py's serializer does, less its pass over every argument for a bytearray
        # or memoryview (a third of its cost): those make hiredis refuse the command, and
        # only then does that serializer convert them (or raise redis-py's DataError).
        command = args[0]
        if isinstance(command, str):
            args = (*command.encode().split(), *args[1:])
        elif b" " in command:
            args = (*command.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:
            return _SERIALIZER.pack(*args)


@functools.cache
def packing(connection_class: type) -> type:
    """``connection_class`` (plain, TLS, unix socket, Sentinel-managed) packing with hiredis."""
    if issubclass(connection_class, HiredisPacking):
        return connection_class
    return type(connection_class.__name__, (HiredisPacking, connection_class), {})


def pack_with_hiredis(pool: Any) -> None:
    """Make the connections ``pool`` opens from now on pack with hiredis."""
    pool.connection_class = packing(pool.connection_class)
