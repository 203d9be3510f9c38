"""Each queue in the Redis layout of the Node BullMQ major its fleet runs (5 or 6).

bullmq 3.x (Python) writes BullMQ 6's layout, where a paused queue keeps its jobs in ``wait``
under ``meta.paused``. BullMQ 5 moves them to a ``paused`` list and, on resume, RENAMEs that
list over ``wait``: a job the proxy pushed to ``wait`` meanwhile would vanish. So every
bullmq script the proxy runs is preceded by ``lua/layout_prelude.lua``, which sends the
script's pushes to a paused BullMQ 5 queue's ``wait`` into its ``paused`` list, deciding
inside Redis, in the script that writes. ``Queue.pause()`` runs ``lua/pause.lua``, which
moves ``wait`` to ``paused`` for a BullMQ 5 queue as BullMQ 5's own pause does; bullmq's
resume already moves a ``paused`` list back.

``BULLMQ_LAYOUT`` says how the layout is chosen: ``auto`` reads it per queue (``meta.version``
as every Node BullMQ ``Queue`` writes it, else an existing ``paused`` list), ``5`` treats
every queue as BullMQ 5's, ``6`` runs bullmq's scripts untouched.
"""

from __future__ import annotations

import functools
import re
import weakref
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from bullmq.redis_connection import SCRIPT_DEFINITIONS, loadScript
from redis.commands.core import AsyncScript

LAYOUTS = ("auto", "5", "6")
PAUSE = "pause"

_LUA = resources.files("bullmq_proxy.redis") / "lua"
_PRELUDE = (_LUA / "layout_prelude.lua").read_text("utf-8")
_PAUSE = (_LUA / "pause.lua").read_text("utf-8")
_VERSION = re.compile(r"bullmq:(\d+)\.")

# Wrapped scripts per Redis client, by layout and name: bullmq registers its scripts per
# connection, and the proxy's Queues share one client, so each client wraps a script once.
_wrapped: weakref.WeakKeyDictionary[Any, dict[str, AsyncScript]] = weakref.WeakKeyDictionary()


@functools.cache
def _source(layout: str, name: str) -> str:
    """bullmq's script ``name`` (ours for pausing) behind the prelude, for ``layout``."""
    body = _PAUSE if name == PAUSE else loadScript(SCRIPT_DEFINITIONS[name])
    force = "true" if layout == "5" else "false"
    return f"local bmqpForceV5 = {force}\n{_PRELUDE}\n{body}"


class _Pause:
    """bullmq's ``pause`` command: pausing runs ours, resuming bullmq's own."""

    def __init__(self, pause: AsyncScript, resume: AsyncScript) -> None:
        self.pause = pause
        self.resume = resume

    def __call__(self, keys: Sequence[str], args: Sequence[Any], client: Any = None) -> Any:
        script = self.pause if args and args[0] == "paused" else self.resume
        return script(keys=keys, args=args, client=client)


def speak_layout(backend: Any, layout: str) -> None:
    """Make a bullmq ``RedisBackend``'s scripts write its queue in its fleet's layout."""
    if layout == "6":
        return
    commands: dict[str, Any] = backend.scripts.commands
    client = backend.connection.conn
    scripts = _wrapped.setdefault(client, {})
    for name in SCRIPT_DEFINITIONS:
        key = f"{layout}:{name}"
        if key not in scripts:
            script = client.register_script(_source(layout, name))
            if name == PAUSE:
                # Resuming is bullmq's own: it already moves a paused list back to wait.
                script = _Pause(script, client.register_script(
                    loadScript(SCRIPT_DEFINITIONS[name])))
            scripts[key] = script
        commands[name] = scripts[key]


def layout_of(version: str | None, has_paused_list: bool, layout: str) -> int:
    """The layout (5 or 6) of a queue from its ``meta.version`` and whether a ``paused``
    list exists; the same rule as ``bmqpSpeaksV5`` in ``lua/layout_prelude.lua``."""
    if layout != "auto":
        return int(layout)
    match = _VERSION.match(version or "")
    if match:
        return 5 if int(match.group(1)) <= 5 else 6
    return 5 if has_paused_list else 6


async def read_layout(client: Any, keys: Mapping[str, str], layout: str) -> int:
    """The layout of the queue with these bullmq ``keys``, read from Redis."""
    if layout != "auto":
        return int(layout)
    async with client.pipeline(transaction=False) as pipe:
        pipe.hget(keys["meta"], "version")
        pipe.exists(keys["paused"])
        version, paused = await pipe.execute()
    return layout_of(version, bool(paused), layout)


# The states Node BullMQ counts and lists when given none.
_DEFAULT_TYPES = ("active", "completed", "delayed", "failed", "prioritized", "waiting",
                  "waiting-children")


def job_types(requested: Sequence[str], major: int) -> list[str]:
    """The job states to count or list for ``requested``, as the queue's Node BullMQ major
    reads them: BullMQ 5 counts its ``paused`` list with ``waiting`` (and by default);
    BullMQ 6 has no ``paused`` state, a paused queue's jobs are ``waiting``."""
    types = list(dict.fromkeys(requested or _DEFAULT_TYPES))
    if major == 5 and "waiting" in types and "paused" not in types:
        types.append("paused")
    return types
