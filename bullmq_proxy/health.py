"""Liveness and readiness probes: ``GET /healthz`` and ``GET /readyz``.

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

from bullmq_proxy.auth import Policy
from bullmq_proxy.errors import NOT_READY, REDIS_UNAVAILABLE, ErrorKind, ProxyError
from bullmq_proxy.http.router import Call, Route
from bullmq_proxy.logs import Logger
from bullmq_proxy.schemas.responses import HEALTH

log = Logger(namespace="bullmq_proxy.health")

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


def health_routes(readiness: Readiness,
                  may_see_details: Callable[[Call], Awaitable[bool]]) -> list[Route]:
    """``/healthz`` and ``/readyz``: public, but only a caller with a valid token learns why
    a check fails (the reasons name Redis hosts and errors)."""

    async def healthz(call: Call) -> Any:
        return {"status": "ok"}

    async def readyz(call: Call) -> Any:
        checks = await readiness.run()
        failed = {name: outcome for name, outcome in checks.items() if outcome != "ok"}
        if not failed:
            body: dict[str, Any] = {"status": "ok", "checks": checks}
            warnings = readiness.warnings()
            if warnings and await may_see_details(call):
                body["warnings"] = warnings
            return body
        # Probes repeat every few seconds: the answer says why, the log need not each time.
        log.debug("Not ready: {failed}", failed=", ".join(failed))
        kind = REDIS_UNAVAILABLE if "redis" in failed else NOT_READY
        if await may_see_details(call):
            detail = "; ".join(f"{name}: {reason}" for name, reason in failed.items())
            raise NotReady(kind, f"The proxy is not ready ({detail}).", checks)
        named = {name: "ok" if name not in failed else "failing" for name in checks}
        raise NotReady(kind, f"The proxy is not ready ({', '.join(failed)}); a token shows "
                             "why.", named)

    return [
        Route(b"GET", "/healthz", healthz, Policy.PUBLIC, response=HEALTH,
              summary="Liveness: the process answers"),
        Route(b"GET", "/readyz", readyz, Policy.PUBLIC, response=HEALTH,
              summary="Readiness: Redis and the components answer (503 when not)"),
    ]
