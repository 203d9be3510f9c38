"""Assembles the proxy: named services around one shared context, started in the order they
are added and stopped one after another in reverse (docs/operations.md, "Shutdown"):

``drain`` (``/readyz`` answers 503 from then on), ``websockets``, ``workers`` (they stop
taking jobs; calls in flight and jobs held after a 202 may still call back through the open
listeners until the grace period ends), ``http`` (the listeners close), ``redis`` (the
clients close), ``embedded-redis`` (the private redis-server, if any, stops last).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import attrs
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred, maybeDeferred

from bullmq_proxy.auth import Gate, IAuthenticator, load_or_create_token
from bullmq_proxy.bridge import as_deferred
from bullmq_proxy.config import Config
from bullmq_proxy.core import Core, build_core
from bullmq_proxy.endpoints import listen_endpoint
from bullmq_proxy.health import Readiness, condition
from bullmq_proxy.http.openapi import api_routes
from bullmq_proxy.http.probes import health_routes, metrics_routes
from bullmq_proxy.http.router import Router
from bullmq_proxy.http.routes import queue_routes
from bullmq_proxy.http.site import Root, build_site
from bullmq_proxy.http.workers import settlement_routes, worker_routes
from bullmq_proxy.logs import Logger
from bullmq_proxy.metrics import Metrics
from bullmq_proxy.plugins import load_plugins
from bullmq_proxy.queue_depth import QueueDepth
from bullmq_proxy.queues import QueueRegistry
from bullmq_proxy.redis.connection import RedisClient, RedisEvents, close_client, create_client
from bullmq_proxy.redis.embedded import EmbeddedRedisService, find_redis_server, free_port
from bullmq_proxy.reload import ReloadOnHangup
from bullmq_proxy.rights import RateLimiter
from bullmq_proxy.summed_metrics import ProcessMetrics
from bullmq_proxy.workers.attach import attach_workers
from bullmq_proxy.workers.connections import WorkerConnections
from bullmq_proxy.workers.service import WorkersService
from bullmq_proxy.ws.attach import attach_websockets
from bullmq_proxy.ws.paths import Kind
from bullmq_proxy.ws.service import WebSocketService

log = Logger(namespace="bullmq_proxy.service")


class SequentialMultiService(MultiService):
    """Stops its children one after another, the last added first, each waiting for the one
    before to finish (``MultiService`` stops them all at once)."""

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        return ensureDeferred(self._stop_children())

    async def _stop_children(self) -> None:
        for service in reversed(list(self)):
            try:
                await maybeDeferred(service.stopService)
            except Exception:
                # The next services must still stop: Redis, say, after a worker that failed.
                log.failure("The {name} service failed to stop", name=service.name)


class DrainService(Service):
    """The first to stop: from then on ``/readyz`` answers 503, so that load balancers send
    no new work while the other services stop in turn."""

    def __init__(self, readiness: Readiness) -> None:
        self.name = "drain"
        self.draining = False
        readiness.add("shutdown", condition(lambda: not self.draining,
                                            "the proxy is shutting down"))

    def stopService(self) -> None:
        super().stopService()
        self.draining = True
        log.info("Shutting down: /readyz answers 503 from now on")


class RedisClientsService(Service):
    """Owns the Redis clients: ``queue`` for short commands, ``blocking`` for waits, and the
    connections every worker shares (``workers``)."""

    def __init__(self, config: Config, events: RedisEvents | None = None) -> None:
        self.name = "redis"
        self.queue = create_client(config.redis, events=events)
        self.blocking = create_client(config.redis, blocking=True, events=events)
        # Workers may still be settling jobs when this service is told to stop.
        self.workers = WorkerConnections(config.redis, config.queue_prefix,
                                         close_wait=config.worker_shutdown_grace + 5)

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        closed = DeferredList(
            [as_deferred(close_client(client))
             for client in (self.queue, self.blocking)] + [as_deferred(self.workers.close())]
        )
        return closed.addCallback(lambda _: log.info("Redis clients closed"))


class CoreService(Service):
    """Stops the core's background work (event feeds, pulled queues' stalled checks)."""

    name = "core"

    def __init__(self, core: Core) -> None:
        self._core = core

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        return as_deferred(self._core.close())


@attrs.frozen
class ProxyContext:
    """What every part of the proxy shares: built once per process."""

    config: Config
    reactor: Any
    redis: RedisClient
    blocking_redis: RedisClient
    worker_connections: WorkerConnections
    queues: QueueRegistry
    core: Core
    gate: Gate
    router: Router
    root: Root
    metrics: Metrics
    readiness: Readiness
    listeners: MultiService


def _with_embedded_redis(config: Config, reactor: Any, parent: MultiService) -> Config:
    if not config.redis.embedded:
        return config
    embedded = EmbeddedRedisService(reactor, find_redis_server(), free_port(), config.data_dir)
    embedded.setServiceParent(parent)
    redis = attrs.evolve(config.redis, host="127.0.0.1", port=embedded.port)
    return attrs.evolve(config, redis=redis)


def _with_tokens(config: Config) -> Config:
    if config.auth_tokens:
        return config
    token, created = load_or_create_token(config.data_dir)
    path = f"{config.data_dir}/auth-token"
    if not created:
        log.info("No AUTH_TOKENS set; using the token kept in {path}", path=path)
    elif _on_a_terminal(sys.stderr):
        log.info("No AUTH_TOKENS set; generated an API token, kept in {path} and shown on "
                 "the terminal", path=path)
        # Outside the log, which may be kept; shown once.
        print(f"bullmq-proxy: the generated API token (kept in {path}):\n{token}",
              file=sys.stderr, flush=True)
    else:
        # Standard error is journald's or docker logs' here: the token stays in its file.
        log.info("No AUTH_TOKENS set; generated an API token, kept in {path}", path=path)
    return attrs.evolve(config, auth_tokens=(token,))


def _on_a_terminal(stream: Any) -> bool:
    try:
        return os.isatty(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False


def build_context(config: Config, reactor: Any, top: MultiService) -> ProxyContext:
    """Everything but the listeners; services it needs are added to ``top``, which stops them
    in the documented order when it is a ``SequentialMultiService``."""
    config = _with_embedded_redis(config, reactor, top)
    config = _with_tokens(config)
    metrics = Metrics()
    clients = RedisClientsService(config, metrics.redis_events())
    clients.setServiceParent(top)

    queues = QueueRegistry(clients.queue, config.queue_prefix, config.queue_cache_size,
                           config.bullmq_layout, reactor.seconds)
    authenticators = [
        plugin for plugin in load_plugins(config, config.plugins)
        if IAuthenticator.providedBy(plugin)
    ]
    gate = Gate(authenticators, clients.queue, queues,
                RateLimiter(reactor.seconds, config.rate_limit,
                            lambda name: metrics.rate_limited.labels(name).inc()))
    readiness = Readiness(clients.queue)
    router = Router(config, gate, reactor, metrics.observe_request)
    core = build_core(queues, config)
    # Stopped after the listeners and before Redis: pulls and event streams end with them.
    CoreService(core).setServiceParent(top)
    router.add_routes(queue_routes(core, metrics, config))
    router.add_routes(api_routes(lambda: router.routes))
    router.add_routes(health_routes(readiness, gate.accepts))
    router.add_routes(metrics_routes(metrics, config.metrics_token, config.metrics_public))
    # Listeners sit between Redis and the components, so that on shutdown (reverse order) the
    # workers and sockets finish while endpoints can still reach /progress or /complete.
    listeners = MultiService()
    listeners.setName("http")
    listeners.setServiceParent(top)
    context = ProxyContext(
        config=config, reactor=reactor, redis=clients.queue, blocking_redis=clients.blocking,
        worker_connections=clients.workers,
        queues=queues, core=core, gate=gate, router=router, root=Root(router),
        metrics=metrics, readiness=readiness, listeners=listeners,
    )
    workers = attach_workers(context, top)
    router.add_routes(worker_routes(config, workers))
    router.add_routes(settlement_routes(workers, core.pulls))
    websockets = attach_websockets(context, top)
    depth = QueueDepth(queues, lambda: _worked_queues(workers, websockets), reactor.seconds)
    metrics.deployment.register(depth)
    metrics.read_on_scrape(depth.read)
    metrics.keep_queues(depth.served)
    DrainService(readiness).setServiceParent(top)
    return context


def _worked_queues(workers: WorkersService, websockets: WebSocketService) -> set[str]:
    """The queues with a worker here: registered HTTP workers and open push workers."""
    pushed = {protocol.target.queue for protocol in list(websockets.sockets)
              if protocol.target is not None and protocol.target.kind is Kind.WORKER}
    return {*workers.workers, *pushed}


def build_service(config: Config, reactor: Any,
                  metrics_dir: str | None = None) -> SequentialMultiService:
    """The whole proxy; ``metrics_dir`` is where --processes share their metrics."""
    top = SequentialMultiService()
    context = build_context(config, reactor, top)
    config = context.config
    site = build_site(config, context.root, reactor, context.metrics.observe_request)
    for description in config.listen:
        listener = StreamServerEndpointService(listen_endpoint(reactor, description), site)
        listener.setName(f"listen {description}")
        listener.setServiceParent(context.listeners)
    if metrics_dir is not None:
        shared = ProcessMetrics(reactor, metrics_dir, context.metrics.exposition)
        shared.listener().setServiceParent(context.listeners)
        context.metrics.sum_with(shared.others)
    ReloadOnHangup(reactor, context.gate.reload).setServiceParent(top)
    log.info("bullmq-proxy ready to listen on {listen}, Redis at {redis}",
             listen=", ".join(config.listen), redis=config.redis.display())
    return top
