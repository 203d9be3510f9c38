"""The operations routes: ``GET /healthz``, ``GET /readyz`` and ``GET /metrics``.

Liveness only proves the process answers HTTP; readiness runs the checks of ``health.py``.
Both are public so that load balancers and orchestrators probe without a token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from bullmq_proxy.auth import Policy, bearer_token, tokens_match
from bullmq_proxy.errors import NOT_READY, REDIS_UNAVAILABLE, UNAUTHORIZED, ProxyError
from bullmq_proxy.health import NotReady, Readiness
from bullmq_proxy.http.router import Call, Reply, Route
from bullmq_proxy.logs import Logger
from bullmq_proxy.metrics import Metrics
from bullmq_proxy.rights import Right
from bullmq_proxy.schemas.responses import HEALTH

log = Logger(namespace="bullmq_proxy.health")


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


def metrics_routes(metrics: Metrics, token: str | None, public: bool = False) -> list[Route]:
    """``GET /metrics``: with ``token`` set only that bearer token may scrape; otherwise an
    API token with the admin right, unless ``public``."""

    async def scrape(call: Call) -> Any:
        if token is not None:
            given = bearer_token(call.request)
            if given is None or not tokens_match(given, token):
                raise ProxyError(
                    UNAUTHORIZED,
                    "A valid metrics token is required (Authorization: Bearer <token>).",
                    headers={"WWW-Authenticate": 'Bearer realm="bullmq-proxy-metrics"'},
                )
        return Reply(
            text=(await metrics.scrape()).decode("utf-8"),
            headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4},
        )

    policy = Policy.PUBLIC if token is not None or public else Policy.TOKEN
    return [Route(b"GET", "/metrics", scrape, policy, response={"type": "string"},
                  media="text/plain", statuses=(401,), right=Right.ADMIN,
                  summary="Prometheus metrics (METRICS_TOKEN, else an admin token)")]
