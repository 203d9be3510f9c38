"""Assembles the proxy: a ``MultiService`` of named services around one shared context.

Start order is the order children are added; ``MultiService`` stops them in reverse: the
workers and sockets finish first (endpoints can still call back during their grace period),
then the listeners close, then the Redis clients, and the embedded Redis (if any) stops last.
"""

from __future__ import annotations

import sys
from typing import Any

import attrs
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger

from bullmq_proxy.auth import Gate, IAuthenticator, load_or_create_token
from bullmq_proxy.bridge import as_deferred
from bullmq_proxy.config import Config
from bullmq_proxy.endpoints import listen_endpoint
from bullmq_proxy.health import Readiness, health_routes
from bullmq_proxy.http.router import Router
from bullmq_proxy.http.routes import queue_routes
from bullmq_proxy.http.site import Root, build_site
from bullmq_proxy.metrics import Metrics, metrics_routes
from bullmq_proxy.plugins import load_plugins
from bullmq_proxy.queues import QueueRegistry
from bullmq_proxy.redis.connection import RedisClient, RedisEvents, close_client, create_client
from bullmq_proxy.redis.embedded import EmbeddedRedisService, find_redis_server, free_port
from bullmq_proxy.workers.attach import attach_workers
from bullmq_proxy.ws.attach import attach_websockets

log = Logger(namespace="bullmq_proxy.service")


class RedisClientsService(Service):
    """Owns the two Redis clients: ``queue`` for short commands, ``blocking`` for waits."""

    def __init__(self, config: Config, events: RedisEvents | None = None) -> None:
        self.name = "redis"
        self.queue = create_client(config.redis, events=events)
        self.blocking = create_client(config.redis, blocking=True, events=events)

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        return DeferredList(
            [as_deferred(close_client(client))
             for client in (self.queue, self.blocking)]
        )


@attrs.frozen
class ProxyContext:
    """What every part of the proxy shares: built once per process."""

    config: Config
    reactor: Any
    redis: RedisClient
    blocking_redis: RedisClient
    queues: QueueRegistry
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
    if created:
        # Printed once, outside the log, so it never lands in log storage.
        print(
            f"bullmq-proxy: no AUTH_TOKENS set; generated an API token and kept it in "
            f"{config.data_dir}/auth-token:\n{token}",
            file=sys.stderr,
            flush=True,
        )
    else:
        log.info("No AUTH_TOKENS set; using the token kept in {path}",
                 path=f"{config.data_dir}/auth-token")
    return attrs.evolve(config, auth_tokens=(token,))


def build_context(config: Config, reactor: Any, top: MultiService) -> ProxyContext:
    """Everything but the listeners; services it needs are added to ``top``."""
    config = _with_embedded_redis(config, reactor, top)
    config = _with_tokens(config)
    metrics = Metrics()
    clients = RedisClientsService(config, metrics.redis_events())
    clients.setServiceParent(top)

    queues = QueueRegistry(clients.queue, config.queue_prefix, config.queue_cache_size)
    authenticators = [
        plugin for plugin in load_plugins(config, config.plugins)
        if IAuthenticator.providedBy(plugin)
    ]
    gate = Gate(authenticators, clients.queue, queues)
    readiness = Readiness(clients.queue)
    router = Router(config, gate, metrics.observe_request)
    router.add_routes(queue_routes(queues, metrics))
    router.add_routes(health_routes(readiness))
    router.add_routes(metrics_routes(metrics, config.metrics_token))
    # Listeners sit between Redis and the components, so that on shutdown (reverse order) the
    # workers and sockets finish while endpoints can still reach /progress or /complete.
    listeners = MultiService()
    listeners.setName("http")
    listeners.setServiceParent(top)
    context = ProxyContext(
        config=config, reactor=reactor, redis=clients.queue, blocking_redis=clients.blocking,
        queues=queues, gate=gate, router=router, root=Root(router),
        metrics=metrics, readiness=readiness, listeners=listeners,
    )
    attach_workers(context, top)
    attach_websockets(context, top)
    return context


def build_service(config: Config, reactor: Any) -> MultiService:
    top = MultiService()
    context = build_context(config, reactor, top)
    config = context.config
    site = build_site(config, context.root, reactor, context.metrics.observe_request)
    for description in config.listen:
        listener = StreamServerEndpointService(listen_endpoint(reactor, description), site)
        listener.setName(f"listen {description}")
        listener.setServiceParent(context.listeners)
    log.info("bullmq-proxy ready to listen on {listen}, Redis at {redis}",
             listen=", ".join(config.listen), redis=config.redis.display())
    return top
