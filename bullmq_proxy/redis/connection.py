"""Build the proxy's redis-py asyncio clients from one ``RedisSettings``.

Two clients exist per process: one pooled client for short queue operations, whose
commands give up quickly so that requests fail with 503 instead of hanging, and one for
blocking and worker use, which may wait on the server indefinitely and retries for longer.
"""

from __future__ import annotations

import redis.asyncio as aredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError

from bullmq_proxy.config import RedisSettings

RETRY_ON = [BusyLoadingError, ConnectionError, TimeoutError]


def create_client(
    settings: RedisSettings, *, blocking: bool = False, max_connections: int = 64
) -> aredis.Redis:
    """A client on its own pool; closing queues that share it never closes the pool."""
    if blocking:
        retry = Retry(ExponentialBackoff(cap=5.0, base=0.1), retries=20)
        socket_timeout = None
    else:
        retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3)
        socket_timeout = 5.0
    common = {
        "decode_responses": True,
        "retry": retry,
        "retry_on_error": RETRY_ON,
        "socket_connect_timeout": 2.0,
        "socket_timeout": socket_timeout,
        "socket_keepalive": True,
        "health_check_interval": 30,
        "max_connections": max_connections,
    }
    if settings.url:
        extra = {}
        if settings.username:
            extra["username"] = settings.username
        if settings.password:
            extra["password"] = settings.password
        pool = aredis.ConnectionPool.from_url(settings.url, **common, **extra)
    else:
        connection_class = aredis.SSLConnection if settings.tls else aredis.Connection
        pool = aredis.ConnectionPool(
            connection_class=connection_class,
            host=settings.host,
            port=settings.port,
            username=settings.username,
            password=settings.password,
            **common,
        )
    return aredis.Redis(connection_pool=pool)
