"""Readiness: the checks ``GET /readyz`` runs (its route is in ``http/probes.py``).

``/healthz`` only proves the process answers HTTP. ``/readyz`` proves the proxy can serve:
Redis answers a PING within a short timeout, and every check other components registered
(for example "worker registry loaded") passes. Both are public so that load balancers and
orchestrators can probe without a token.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aredis

from bullmq_proxy.errors import ErrorKind, ProxyError

# Short enough for a Kubernetes probe with its default 1 s timeout to see a 503, not a hang.
READY_TIMEOUT_SECONDS = 0.8

ReadinessCheck = Callable[[], Awaitable[str | None]]
"""Returns None when ready, else a short reason an operator can act on."""

Advisory = Callable[[], str | None]
"""Something an operator should know that does not stop the proxy serving (a worker that
cannot run): None, or a short sentence without names or secrets, since /readyz is public."""


class NotReady(ProxyError):
    """A 503 problem whose ``checks`` member tells which check failed and why."""

    def __init__(self, kind: ErrorKind, detail: str, checks: dict[str, str]) -> None:
        super().__init__(kind, detail, headers={"Retry-After": "1"})
        self.checks = checks

    def problem(self, instance: str) -> dict[str, Any]:
        return {**super().problem(instance), "checks": self.checks}


class Readiness:
    """Named readiness checks; Redis is always the first one."""

    def __init__(self, redis: aredis.Redis, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        self.timeout = timeout
        self._checks: dict[str, ReadinessCheck] = {"redis": lambda: _ping(redis)}
        self._advisories: dict[str, Advisory] = {}

    def add(self, name: str, check: ReadinessCheck) -> None:
        if name in self._checks:
            raise ValueError(f"a readiness check named {name!r} already exists")
        self._checks[name] = check

    def advise(self, name: str, advisory: Advisory) -> None:
        self._advisories[name] = advisory

    def warnings(self) -> dict[str, str]:
        """The advisories that have something to say, by name."""
        said = {name: advisory() for name, advisory in self._advisories.items()}
        return {name: text for name, text in said.items() if text}

    async def run(self) -> dict[str, str]:
        """Every check's outcome by name: ``"ok"`` or the reason it failed."""
        names = list(self._checks)
        outcomes = await asyncio.gather(*(self._run_one(self._checks[n]) for n in names))
        return dict(zip(names, outcomes, strict=True))

    async def _run_one(self, check: ReadinessCheck) -> str:
        try:
            reason = await asyncio.wait_for(check(), self.timeout)
        except TimeoutError:
            return f"no answer within {self.timeout:g}s"
        except Exception as err:
            return f"{type(err).__name__}: {err}"
        return reason or "ok"


def condition(test: Callable[[], bool], reason: str) -> ReadinessCheck:
    """A check that passes while ``test()`` is true, else reports ``reason``."""

    async def check() -> str | None:
        return None if test() else reason

    return check


async def _ping(client: aredis.Redis) -> str | None:
    return None if await client.ping() else "PING was not answered with PONG"
