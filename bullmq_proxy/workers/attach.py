"""Wires the workers into an assembled proxy: the service, its readiness and its gauges
(``service.py`` adds its routes, which belong to ``http/``)."""

from __future__ import annotations

from typing import Any

from twisted.application.service import MultiService

from bullmq_proxy.config import ConfigError
from bullmq_proxy.errors import ProxyError
from bullmq_proxy.health import condition
from bullmq_proxy.live_metrics import worker_gauges
from bullmq_proxy.workers.endpoint_policy import policy_of
from bullmq_proxy.workers.http_client import endpoint_client
from bullmq_proxy.workers.service import WorkersService
from bullmq_proxy.workers.settlement import Settlements
from bullmq_proxy.workers.signing import validate_secrets
from bullmq_proxy.workers.store import WorkerStore


def workers_advisory(workers: WorkersService) -> str | None:
    """What /readyz warns of: registrations not run, workers failing now (counts only)."""
    said = []
    if workers.refused:
        said.append(f"{len(workers.refused)} registered worker(s) not run on this instance")
    failing = workers.failing()
    if failing:
        said.append(f"{len(failing)} worker(s) hit errors in the last minute")
    return "; ".join(said) + "; GET /workers/:queue says why" if said else None


def attach_workers(context: Any, top: MultiService) -> WorkersService:
    """Add the ``workers`` service to an assembled proxy."""
    config = context.config
    if config.worker_signing_secret:
        try:
            validate_secrets(list(config.worker_signing_secret), "WORKER_SIGNING_SECRET")
        except ProxyError as err:
            raise ConfigError(err.detail) from None
    store = WorkerStore(context.redis, config.worker_metadata_key, config.worker_metadata_stream,
                        config.max_len_worker_metadata_stream)
    settlements = Settlements(context.redis, context.queues, context.metrics.settled)
    http, pool = endpoint_client(context.reactor, policy_of(
        config.endpoint_policy, config.endpoint_allow, config.listen).refusal)
    workers = WorkersService(config, context.reactor, store, context.blocking_redis, http,
                             settlements, context.worker_connections, pool,
                             context.metrics.observe_endpoint_call,
                             context.metrics.count_jobs,
                             lambda queue: context.metrics.worker_errors.labels(queue).inc())
    workers.setServiceParent(top)
    context.metrics.on_scrape(worker_gauges(context.metrics, workers))
    context.readiness.add("workers", condition(lambda: workers.loaded,
                                               "the worker registry is not loaded yet"))
    context.readiness.advise("workers", lambda: workers_advisory(workers))
    return workers
