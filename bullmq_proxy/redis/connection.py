"""Build the proxy's redis-py asyncio clients from one ``RedisSettings``.

Two clients exist per process: one pooled client for short queue operations, whose
commands give up quickly so that requests fail with 503 instead of hanging, and one for
blocking and worker use, which may wait on the server indefinitely and retries for longer.

The deployment decides the client class: a plain ``Redis`` on its own pool (standalone,
TLS, unix socket), a ``Redis`` on a Sentinel-managed pool that follows fail-overs, or a
``RedisCluster`` that routes each command to the node owning its slot. BullMQ accepts all
of them as its connection.

A client may also be *bounded* (``bound=N``): at most N commands in flight, the others wait
their turn, so that every worker of the process can share N connections whatever their
concurrency. redis-py's own pools raise when they are full rather than wait.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias, TypeVar

import attrs
import redis.asyncio as aredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError

from bullmq_proxy.config import RedisSettings
from bullmq_proxy.redis.packing import pack_with_hiredis

RETRY_ON = [BusyLoadingError, ConnectionError, TimeoutError]

RedisClient: TypeAlias = aredis.Redis | RedisCluster
T = TypeVar("T")


@attrs.frozen
class RedisEvents:
    """Told about every failed attempt at a Redis command, and every command that worked."""

    failed: Callable[[Exception], None]
    succeeded: Callable[[], None]


class ObservedRetry(Retry):
    """redis-py's retry loop, reporting each failed attempt (the connection is dropped and
    made again on the next one) and each success."""

    def __init__(self, backoff: Any, retries: int, events: RedisEvents) -> None:
        super().__init__(backoff, retries)
        self._events = events

    def __deepcopy__(self, memo: dict[int, Any]) -> ObservedRetry:
        # Every connection copies its retry; the copies must share the events, not copy them.
        twin = ObservedRetry(copy.deepcopy(self._backoff, memo), self._retries, self._events)
        twin.update_supported_errors(list(self._supported_errors))
        return twin

    async def call_with_retry(
        self, do: Callable[[], Awaitable[T]], fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        async def observed(error: Exception, *count: int) -> None:
            self._events.failed(error)
            await fail(error, *count)

        result = await super().call_with_retry(do, observed, is_retryable, with_failure_count)
        self._events.succeeded()
        return result


class _Bounded:
    """At most as many commands (or pipelines) in flight as the semaphore allows, so that a
    pool of that many connections (per node, on Cluster) is never exhausted."""

    _in_flight: asyncio.Semaphore | None = None

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if self._in_flight is None:
            return await super().execute_command(*args, **options)  # type: ignore[misc]
        async with self._in_flight:
            return await super().execute_command(*args, **options)  # type: ignore[misc]

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        pipe = super().pipeline(*args, **kwargs)  # type: ignore[misc]
        if self._in_flight is None:
            return pipe
        execute, gate = pipe.execute, self._in_flight

        async def gated(*call_args: Any, **call_kwargs: Any) -> Any:
            async with gate:
                return await execute(*call_args, **call_kwargs)

        pipe.execute = gated
        return pipe


class BoundedRedis(_Bounded, aredis.Redis):
    pass


class BoundedCluster(_Bounded, RedisCluster):
    pass


def _tls_options(settings: RedisSettings) -> dict[str, Any]:
    """redis-py's ``ssl_*`` keywords; only valid on TLS connections."""
    if not settings.uses_tls:
        return {}
    options: dict[str, Any] = {}
    if settings.tls_ca:
        options["ssl_ca_certs"] = settings.tls_ca
    if settings.tls_cert:
        options["ssl_certfile"] = settings.tls_cert
        options["ssl_keyfile"] = settings.tls_key
    return options


def _credentials(settings: RedisSettings) -> dict[str, Any]:
    """Explicit settings win over credentials inside the URL."""
    credentials = {}
    if settings.username:
        credentials["username"] = settings.username
    if settings.password:
        credentials["password"] = settings.password
    return credentials


def create_client(
    settings: RedisSettings, *, blocking: bool = False, max_connections: int = 64,
    events: RedisEvents | None = None, bound: int | None = None, name: str | None = None,
) -> RedisClient:
    """A client on its own pool; closing queues that share it never closes the pool.

    ``bound``: at most that many commands in flight and that many connections (per node on
    Cluster); ``name``: the ``CLIENT SETNAME`` of each of its connections."""
    if blocking:
        backoff, retries, socket_timeout = ExponentialBackoff(cap=5.0, base=0.1), 20, None
    else:
        backoff, retries, socket_timeout = ExponentialBackoff(cap=0.5, base=0.05), 3, 5.0
    retry = (Retry(backoff, retries) if events is None
             else ObservedRetry(backoff, retries, events))
    common: dict[str, Any] = {
        "decode_responses": True,
        "retry": retry,
        "retry_on_error": RETRY_ON,
        "socket_connect_timeout": 2.0,
        "socket_timeout": socket_timeout,
        "socket_keepalive": True,
        "health_check_interval": 30,
        "max_connections": max_connections,
        **_credentials(settings),
        **_tls_options(settings),
    }
    if bound is not None:
        common["max_connections"] = bound
    if name is not None:
        common["client_name"] = name
    client = _client(settings, common, bounded=bound is not None)
    if bound is not None:
        client._in_flight = asyncio.Semaphore(bound)  # type: ignore[union-attr]
    return client


def _client(settings: RedisSettings, common: dict[str, Any], bounded: bool) -> RedisClient:
    if settings.cluster:
        return _cluster_client(settings, common, BoundedCluster if bounded else RedisCluster)
    redis_class = BoundedRedis if bounded else aredis.Redis
    if settings.sentinels:
        client = _sentinel_client(settings, common, redis_class)
    elif settings.url:
        client = redis_class(connection_pool=aredis.ConnectionPool.from_url(settings.url,
                                                                          **common))
    else:
        connection_class = aredis.SSLConnection if settings.tls else aredis.Connection
        client = redis_class(connection_pool=aredis.ConnectionPool(
            connection_class=connection_class, host=settings.host, port=settings.port, **common,
        ))
    # Not on Cluster: redis-py builds the connections of each node itself.
    pack_with_hiredis(client.connection_pool)
    return client


def _cluster_client(settings: RedisSettings, common: dict[str, Any],
                    cluster_class: type[RedisCluster]) -> RedisCluster:
    # The node in the URL or host is only where discovery starts; the pool limit is per node.
    if settings.url:
        return cluster_class.from_url(settings.url, **common)
    return cluster_class(host=settings.host, port=settings.port, ssl=settings.tls, **common)


def _sentinel_client(settings: RedisSettings, common: dict[str, Any],
                     redis_class: type[aredis.Redis]) -> aredis.Redis:
    # No retries on a Sentinel: the next one in the list is the retry.
    sentinel_options: dict[str, Any] = {
        "socket_connect_timeout": common["socket_connect_timeout"],
        "socket_timeout": 2.0,
        "retry": Retry(NoBackoff(), retries=0),
    }
    if settings.sentinel_password:
        sentinel_options["password"] = settings.sentinel_password
    connection = dict(common)
    max_connections = connection.pop("max_connections")
    if settings.tls:
        connection["ssl"] = True  # a Sentinel-managed TLS connection, not a plain SSLConnection
    sentinel = Sentinel(settings.sentinels, sentinel_kwargs=sentinel_options, **connection)
    return sentinel.master_for(
        settings.sentinel_master, redis_class=redis_class, max_connections=max_connections,
    )


async def close_client(client: RedisClient) -> None:
    """Close a client and its connections, whichever kind it is."""
    if isinstance(client, RedisCluster):
        await client.aclose()
    else:
        await client.aclose(close_connection_pool=True)


def worker_client(settings: RedisSettings, concurrency: int) -> RedisClient:
    """A client for one bullmq QueueEvents (or another object that blocks on Redis), built
    like every other (TLS, Sentinel, Cluster). It is the object's own because bullmq closes
    its connection, which must not be a shared one; close it with ``close_client`` after."""
    return create_client(settings, blocking=True, max_connections=concurrency + 1)
