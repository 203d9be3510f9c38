"""Pipelines of Lua scripts without a ``SCRIPT EXISTS`` round trip before each.

redis-py's ``Pipeline.execute`` asks Redis whether the pipeline's scripts exist every time,
a round trip of its own before the pipeline's; the add batches and the coalesced worker
scripts made one per batch. ioredis (under Node BullMQ) instead remembers which scripts a
connection has loaded. Here a client remembers which scripts Redis has confirmed to it, and
a pipeline of only those goes out at once. Should Redis have lost them since (a restart,
``SCRIPT FLUSH``, a fail-over to a replica), the commands it refused with ``NOSCRIPT``, which
did not run, are sent again after the scripts are loaded, and their answers take the
refused ones' places.

A pipeline holding a ``MULTI`` block always checks first: a script missing inside a
transaction fails at ``EXEC`` while the rest of the block runs, so the block would not be
all or none.
"""

from __future__ import annotations

import weakref
from typing import Any

from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError

_confirmed: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


def confirmed(client: Any) -> set[str]:
    """The SHA1s of the scripts Redis has confirmed to ``client``."""
    return _confirmed.setdefault(client, set())


async def execute(client: Any, pipe: Pipeline) -> list[Any]:
    """``pipe.execute(raise_on_error=False)`` for a non-transactional pipeline of ``client``
    (each command's answer or error in its place), checking for its scripts only when
    Redis has not confirmed them all."""
    known = confirmed(client)
    scripts = list(pipe.scripts)
    stack = list(pipe.command_stack)
    trusted = bool(scripts) and all(script.sha in known for script in scripts) and not any(
        args[0] == "MULTI" for args, _ in stack)
    if not trusted:
        results = await pipe.execute(raise_on_error=False)
        # Whatever was missing was loaded before the pipeline ran.
        known.update(script.sha for script in scripts)
        return results
    pipe.scripts = set()
    results = await pipe.execute(raise_on_error=False)
    refused = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
    if refused:
        known.clear()
        async with client.pipeline(transaction=False) as again:
            again.scripts.update(scripts)
            again.command_stack.extend(stack[i] for i in refused)
            retried = await again.execute(raise_on_error=False)
        known.update(script.sha for script in scripts)
        for i, result in zip(refused, retried, strict=True):
            results[i] = result
    return results
