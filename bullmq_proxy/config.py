"""The proxy's configuration: one frozen object built from env vars and twistd options.

Every setting is declared once in ``SETTINGS``; the twistd ``Options`` class and the
environment loader are both generated from that table, so a new setting cannot be
reachable from one and not the other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs
from redis.crc import key_slot

from bullmq_proxy.bounds import MAX_DELAY_MS
from bullmq_proxy.rights import Rate

DEFAULT_PORT = 8080
MIB = 1024 * 1024


class ConfigError(ValueError):
    """A setting has a value the proxy cannot start with; the message names the setting."""


def _integer(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        digits = text.strip().removeprefix("-")
        if not (digits.isascii() and digits.isdigit()) or len(digits) > 30:
            raise ValueError(f"must be an integer, got {text[:40]!r}")
        value = int(text.strip(), 10)
        if minimum is not None and value < minimum:
            raise ValueError(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise ValueError(f"must be at most {maximum}, got {value}")
        return value

    parse.range = (minimum, maximum)  # type: ignore[attr-defined]  # read by the docs test
    return parse


def _number(minimum: float, maximum: float) -> Callable[[str], float]:
    """A number greater than ``minimum``, at most ``maximum`` (no NaN, no infinity)."""

    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(f"must be a number, got {text[:40]!r}") from None
        if not value > minimum:
            raise ValueError(f"must be greater than {minimum:g}, got {text!r}")
        if not value <= maximum:
            raise ValueError(f"must be at most {maximum:g}, got {text[:40]!r}")
        return value

    parse.range = (minimum, maximum)  # type: ignore[attr-defined]
    return parse


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off", ""):
        return False
    raise ValueError(f"must be true or false, got {text!r}")


def _token_list(text: str) -> tuple[str, ...]:
    return tuple(token.strip() for token in text.split(",") if token.strip())


def _text(text: str) -> str:
    return text


def _non_empty(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {text!r}")
        return text

    return parse


CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def _redis_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("redis", "rediss", "unix", *CLUSTER_SCHEMES):
        raise ValueError(
            "must be a redis://, rediss:// or unix:// URL (or redis+cluster://, "
            f"rediss+cluster://), got scheme {parts.scheme!r}"
        )
    try:
        parts.port  # noqa: B018 - urlsplit validates the port lazily
    except ValueError as err:
        raise ValueError(f"has an invalid port: {err}") from None
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError("has no host name")
    if parts.scheme == "unix" and not parts.path:
        raise ValueError("has no socket path")
    return text


def _rate(text: str) -> Rate:
    per_second, slash, burst = text.partition("/")
    try:
        rate = Rate(float(per_second), int(burst))
    except ValueError:
        raise ValueError(f"must be PER_SECOND/BURST, e.g. 50/100, got {text!r}") from None
    if not slash or not 0 < rate.per_second <= 1e6 or not 1 <= rate.burst <= 1_000_000:
        raise ValueError(f"must be PER_SECOND/BURST with 0 < PER_SECOND <= 1e6 and "
                         f"1 <= BURST <= 1000000, got {text!r}")
    return rate


def _origins(text: str) -> tuple[str, ...]:
    origins = _token_list(text)
    for origin in origins:
        parts = urlsplit(origin)
        if origin != "*" and (parts.scheme not in ("http", "https") or not parts.hostname
                              or parts.path not in ("", "/") or parts.query):
            raise ValueError(f"must list origins like https://app.example.com or *, got "
                             f"{origin!r}")
    return origins


def _readable_file(text: str) -> str:
    try:
        with open(text, "rb"):
            pass
    except OSError as err:
        raise ValueError(f"cannot be read: {err.strerror} ({text})") from None
    return text


def _addresses(text: str) -> tuple[tuple[str, int], ...]:
    """``host:port,host:port`` (port 26379 when left out)."""
    addresses = []
    for item in _token_list(text):
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "26379")
        if not host:
            raise ValueError(f"has an address without a host: {item!r}")
        addresses.append((host.strip("[]"), _integer(1, 65535)(port)))
    if not addresses:
        raise ValueError("must list at least one host:port")
    return tuple(addresses)


@attrs.frozen
class Setting:
    """One configuration value: its env var, its twistd option and how to parse it."""

    attribute: str
    env: str | None
    option: str
    default: Any
    parse: Callable[[str], Any]
    help: str

    @property
    def is_flag(self) -> bool:
        """A boolean: a twistd flag (``--debug``, ``--no-debug``) rather than a value."""
        return self.parse is _boolean


SETTINGS: tuple[Setting, ...] = (
    Setting("redis_url", "REDIS_URL", "redis-url", None, _redis_url,
            "Redis URL: redis://, rediss:// (TLS), unix://, or redis+cluster:// and "
            "rediss+cluster:// for a Redis Cluster node; takes precedence over the host"),
    Setting("redis_host", "REDIS_HOST", "redis-host", None, _non_empty, "Redis host name"),
    Setting("redis_port", "REDIS_PORT", "redis-port", 6379, _integer(1, 65535), "Redis port"),
    Setting("redis_username", "REDIS_USERNAME", "redis-username", None, _text,
            "Redis ACL user name"),
    Setting("redis_password", "REDIS_PASSWORD", "redis-password", None, _text, "Redis password"),
    Setting("redis_tls", "REDIS_TLS", "redis-tls", False, _boolean, "Connect to Redis over TLS"),
    Setting("redis_tls_ca", "REDIS_TLS_CA", "redis-tls-ca", None, _readable_file,
            "CA bundle (PEM) that signs the Redis server's certificate"),
    Setting("redis_tls_cert", "REDIS_TLS_CERT", "redis-tls-cert", None, _readable_file,
            "Client certificate (PEM) for Redis servers that require one"),
    Setting("redis_tls_key", "REDIS_TLS_KEY", "redis-tls-key", None, _readable_file,
            "Private key (PEM) of the client certificate"),
    Setting("redis_cluster", "REDIS_CLUSTER", "redis-cluster", False, _boolean,
            "Redis is a Redis Cluster; the URL or host is any one of its nodes"),
    Setting("redis_sentinels", "REDIS_SENTINELS", "redis-sentinels", (), _addresses,
            "Comma-separated host:port of Redis Sentinels (with REDIS_SENTINEL_MASTER)"),
    Setting("redis_sentinel_master", "REDIS_SENTINEL_MASTER", "redis-sentinel-master", None,
            _non_empty, "Name of the master the Sentinels monitor"),
    Setting("redis_sentinel_password", "REDIS_SENTINEL_PASSWORD", "redis-sentinel-password",
            None, _text, "Password of the Sentinels themselves (not of Redis)"),
    Setting("auth_tokens", "AUTH_TOKENS", "auth-tokens", (), _token_list,
            "Comma-separated bearer tokens accepted by the API"),
    Setting("metrics_token", "METRICS_TOKEN", "metrics-token", None, _non_empty,
            "Bearer token required by GET /metrics (unset: an API token with the admin "
            "right, unless METRICS_PUBLIC)"),
    Setting("metrics_public", "METRICS_PUBLIC", "metrics-public", False, _boolean,
            "Serve GET /metrics without any token"),
    Setting("tokens_file", "TOKENS_FILE", "tokens-file", None, _readable_file,
            "JSON or TOML file of scoped tokens (rights, queues, rates), reread on SIGHUP; "
            "see docs/security.md"),
    Setting("rate_limit", "RATE_LIMIT", "rate-limit", None, _rate,
            "Requests a token may make: PER_SECOND/BURST, e.g. 50/100 (unset: no limit; "
            "the token file may set one per token)"),
    Setting("endpoint_policy", "ENDPOINT_POLICY", "endpoint-policy", "default",
            _choice("default", "public-only"),
            "Which addresses worker endpoints may have: default (not link-local, cloud "
            "metadata or this proxy) or public-only (also not private or loopback)"),
    Setting("endpoint_allow", "ENDPOINT_ALLOW", "endpoint-allow", (), _token_list,
            "Endpoint host names always allowed, comma-separated"),
    Setting("endpoint_max_answer", "ENDPOINT_MAX_ANSWER", "endpoint-max-answer", MIB,
            _integer(1024, 100 * MIB),
            "Bytes of an endpoint's answer the proxy reads; a larger answer fails the job"),
    Setting("cors_origins", "CORS_ORIGINS", "cors-origins", (), _origins,
            "Origins whose browser pages may call the API (comma-separated "
            "scheme://host[:port], or *); unset: no cross-origin calls"),
    Setting("queue_prefix", "QUEUE_PREFIX", "queue-prefix", "bull", _non_empty,
            "BullMQ key prefix"),
    Setting("bullmq_layout", "BULLMQ_LAYOUT", "bullmq-layout", "auto", _choice("auto", "5", "6"),
            "Redis layout of the queues: auto (per queue, from what is in Redis), 5 or 6 "
            "(the Node BullMQ major of the fleet); see docs/compatibility.md"),
    Setting("queue_cache_size", "QUEUE_CACHE_SIZE", "queue-cache-size", 100,
            _integer(1, 100_000),
            "How many Queue objects to keep open"),
    Setting("debug", "DEBUG", "debug", False, _boolean, "Log at debug level too: every "
            "request, every failed attempt, every endpoint connection"),
    Setting("min_queue_name_length", "MIN_QUEUE_NAME_LENGTH", "min-queue-name-length", 3,
            _integer(1, 1000), "Shortest queue name accepted"),
    Setting("max_queue_name_length", "MAX_QUEUE_NAME_LENGTH", "max-queue-name-length", 100,
            _integer(1, 1000), "Longest queue name accepted"),
    Setting("worker_metadata_key", "WORKER_METADATA_KEY", "worker-metadata-key", "bmqp:w:meta",
            _non_empty, "Redis hash holding the registered workers"),
    Setting("worker_metadata_stream", "WORKER_METADATA_STREAM", "worker-metadata-stream",
            "bmpq:w:stream", _non_empty, "Redis stream announcing worker changes"),
    Setting("max_len_worker_metadata_stream", "MAX_LEN_WORKER_METADATA_STREAM",
            "max-len-worker-metadata-stream", 100, _integer(1, 1_000_000),
            "Approximate length cap of the worker stream"),
    Setting("data_dir", "DATA_DIR", "data-dir", "bullmq-proxy-data", _non_empty,
            "Directory for the embedded Redis and the generated token"),
    Setting("max_body_size", "MAX_BODY_SIZE", "max-body-size", 10 * MIB,
            _integer(1, 1024 * MIB),
            "Largest request body in bytes"),
    Setting("request_timeout", "REQUEST_TIMEOUT", "request-timeout", 10.0, _number(0, 3600),
            "Seconds before a request waiting on Redis fails with 504"),
    Setting("http_server", "HTTP_SERVER", "http-server", "lean", _choice("lean", "twisted"),
            "HTTP/1.1 server: lean (httptools) or twisted (twisted.web's own, to compare)"),
    Setting("http_headers_timeout", "HTTP_HEADERS_TIMEOUT", "http-headers-timeout", 30.0,
            _number(0, 3600), "Seconds a client has to send a request's line and headers "
            "(then 408)"),
    Setting("http_idle_timeout", "HTTP_IDLE_TIMEOUT", "http-idle-timeout", 75.0,
            _number(0, 86_400),
            "Seconds an idle keep-alive connection, or a stalled request body, is kept"),
    Setting("log_format", "LOG_FORMAT", "log-format", "text", _choice("text", "json"),
            "Log output format: text or json"),
    Setting("worker_lock_duration", "WORKER_LOCK_DURATION", "worker-lock-duration", 30000,
            _integer(1000, 86_400_000),
            "Milliseconds an HTTP worker's job lock lasts between renewals"),
    Setting("worker_stalled_interval", "WORKER_STALLED_INTERVAL", "worker-stalled-interval",
            30000, _integer(500, 86_400_000), "Milliseconds between checks for stalled jobs"),
    Setting("worker_shutdown_grace", "WORKER_SHUTDOWN_GRACE", "worker-shutdown-grace", 10.0,
            _number(0, 3600), "Seconds in-flight endpoint calls may finish in on shutdown"),
    Setting("worker_signing_secret", "WORKER_SIGNING_SECRET", "worker-signing-secret", (),
            _token_list, "Secret(s) signing every endpoint call, comma-separated (at most two, "
            "for rotation); a worker's own endpoint.signingSecret wins"),
    Setting("worker_breaker_threshold", "WORKER_BREAKER_THRESHOLD", "worker-breaker-threshold",
            5, _integer(1, 1_000_000), "Consecutive endpoint failures that open its circuit"),
    Setting("worker_breaker_window", "WORKER_BREAKER_WINDOW", "worker-breaker-window", 5.0,
            _number(0, 300), "Seconds an open circuit waits before probing (doubles, max 300)"),
    Setting("ws_message_timeout", "WS_MESSAGE_TIMEOUT", "ws-message-timeout", 15.0,
            _number(0, 86_400),
            "Seconds a WebSocket worker has to answer a job before the attempt fails"),
    Setting("ws_ping_interval", "WS_PING_INTERVAL", "ws-ping-interval", 30, _integer(0, 86_400),
            "Seconds between WebSocket keepalive pings (0 disables them)"),
    Setting("ws_ping_timeout", "WS_PING_TIMEOUT", "ws-ping-timeout", 10.0, _number(0, 3600),
            "Seconds a WebSocket peer has to answer a ping before it is dropped"),
    Setting("ws_max_buffered_bytes", "WS_MAX_BUFFERED_BYTES", "ws-max-buffered-bytes", 8 * MIB,
            _integer(1024, 1024 * MIB), "Outgoing bytes a slow WebSocket client may fall behind "
            "before it is disconnected"),
    Setting("worker_max_slots", "WORKER_MAX_SLOTS", "worker-max-slots", 2000,
            _integer(1, 1_000_000), "Concurrency slots all HTTP-endpoint workers of one "
            "instance may run together; a registration past it is refused"),
    Setting("worker_max_retry_delay", "WORKER_MAX_RETRY_DELAY", "worker-max-retry-delay",
            3_600_000, _integer(1000, MAX_DELAY_MS), "Longest delay in ms an endpoint may "
            "ask for with Retry-After or BullMQ-Proxy-Retry (it spends no attempt)"),
    Setting("ws_max_workers", "WS_MAX_WORKERS", "ws-max-workers", 100, _integer(0, 1_000_000),
            "WebSocket worker sockets one instance serves at once (0: none)"),
    Setting("ws_max_worker_slots", "WS_MAX_WORKER_SLOTS", "ws-max-worker-slots", 1000,
            _integer(1, 1_000_000), "Concurrency all WebSocket workers of one instance may "
            "ask for together"),
)


def _redact_url(url: str | None) -> str:
    if not url:
        return repr(url)
    parts = urlsplit(url)
    if parts.password is None:
        return repr(url)
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return repr(parts._replace(netloc=netloc).geturl())


@attrs.frozen
class RedisSettings:
    """Where and how every Redis connection of the proxy connects."""

    url: str | None = attrs.field(default=None, repr=_redact_url)
    host: str = "localhost"
    port: int = 6379
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    tls: bool = False
    embedded: bool = False
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    cluster: bool = False
    sentinels: tuple[tuple[str, int], ...] = ()
    sentinel_master: str | None = None
    sentinel_password: str | None = attrs.field(default=None, repr=False)

    @property
    def uses_tls(self) -> bool:
        return urlsplit(self.url).scheme == "rediss" if self.url else self.tls

    def display(self) -> str:
        """Where Redis is, without credentials, for logs."""
        if self.sentinels:
            where = ",".join(f"{host}:{port}" for host, port in self.sentinels)
            return f"master {self.sentinel_master!r} via Sentinels {where}"
        if self.cluster:
            return f"Redis Cluster at {self._where()}"
        return self._where()

    def _where(self) -> str:
        if self.url:
            parts = urlsplit(self.url)
            if parts.scheme == "unix":
                return f"unix:{parts.path}"
            return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}"
        return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}"


@attrs.frozen
class Config:
    """Everything the proxy needs to know at start, validated."""

    listen: tuple[str, ...] = (f"tcp:{DEFAULT_PORT}",)
    redis: RedisSettings = RedisSettings()
    auth_tokens: tuple[str, ...] = attrs.field(default=(), repr=False)
    metrics_token: str | None = attrs.field(default=None, repr=False)
    tokens_file: str | None = None
    rate_limit: Rate | None = None
    metrics_public: bool = False
    endpoint_policy: str = "default"
    endpoint_allow: tuple[str, ...] = ()
    endpoint_max_answer: int = MIB
    cors_origins: tuple[str, ...] = ()
    queue_prefix: str = "bull"
    bullmq_layout: str = "auto"
    queue_cache_size: int = 100
    debug: bool = False
    min_queue_name_length: int = 3
    max_queue_name_length: int = 100
    worker_metadata_key: str = "bmqp:w:meta"
    worker_metadata_stream: str = "bmpq:w:stream"
    max_len_worker_metadata_stream: int = 100
    data_dir: str = "bullmq-proxy-data"
    max_body_size: int = 10 * MIB
    request_timeout: float = 10.0
    http_server: str = "lean"
    http_headers_timeout: float = 30.0
    http_idle_timeout: float = 75.0
    log_format: str = "text"
    worker_lock_duration: int = 30000
    worker_stalled_interval: int = 30000
    worker_shutdown_grace: float = 10.0
    worker_signing_secret: tuple[str, ...] = attrs.field(default=(), repr=False)
    worker_breaker_threshold: int = 5
    worker_breaker_window: float = 5.0
    ws_message_timeout: float = 15.0
    ws_ping_interval: int = 30
    ws_ping_timeout: float = 10.0
    ws_max_buffered_bytes: int = 8 * MIB
    worker_max_slots: int = 2000
    worker_max_retry_delay: int = 3_600_000
    ws_max_workers: int = 100
    ws_max_worker_slots: int = 1000
    plugins: tuple[str, ...] = ()


def _from_env(env: Mapping[str, str], name: str) -> str | None:
    """An empty variable counts as unset, as in the original (``VAR: ${VAR:-}`` in a compose
    file sets one)."""
    return env.get(name) or None


def _value(setting: Setting, env: Mapping[str, str], options: Mapping[str, Any]) -> Any:
    raw = options.get(setting.option)
    source = f"--{setting.option}"
    if raw is None and setting.env is not None:
        raw = _from_env(env, setting.env)
        source = setting.env
    if raw is None:
        return setting.default
    try:
        return setting.parse(raw)
    except ValueError as err:
        raise ConfigError(f"{source} {err}") from None


def load_config(
    env: Mapping[str, str],
    options: Mapping[str, Any] | None = None,
    listen: tuple[str, ...] = (),
    plugins: tuple[str, ...] = (),
) -> Config:
    """Build the configuration; twistd options override env vars of the same meaning."""
    options = options or {}
    values = {setting.attribute: _value(setting, env, options) for setting in SETTINGS}

    if not listen:
        port = DEFAULT_PORT
        if _from_env(env, "PORT") is not None:
            try:
                port = _integer(0, 65535)(env["PORT"])
            except ValueError as err:
                raise ConfigError(f"PORT {err}") from None
        listen = (f"tcp:{port}",)

    if values["min_queue_name_length"] > values["max_queue_name_length"]:
        raise ConfigError(
            "MIN_QUEUE_NAME_LENGTH must not be greater than MAX_QUEUE_NAME_LENGTH "
            f"({values['min_queue_name_length']} > {values['max_queue_name_length']})"
        )

    redis = _redis_settings({name: values.pop(name) for name in list(values)
                             if name.startswith("redis_")})
    worker_keys = (values["worker_metadata_key"], values["worker_metadata_stream"])
    if redis.cluster and len({key_slot(key.encode()) for key in worker_keys}) > 1:
        # One script writes both, so they must live in one slot.
        raise ConfigError(
            "with Redis Cluster, WORKER_METADATA_KEY and WORKER_METADATA_STREAM must share a "
            "hash tag, e.g. {bmqp}:w:meta and {bmqp}:w:stream"
        )
    return Config(listen=listen, redis=redis, plugins=plugins, **values)


def _redis_settings(values: dict[str, Any]) -> RedisSettings:
    """The ``REDIS_*`` settings, checked against each other."""
    url, host, sentinels = values["redis_url"], values["redis_host"], values["redis_sentinels"]
    cluster = values["redis_cluster"]
    if url:
        scheme = urlsplit(url).scheme
        if scheme in CLUSTER_SCHEMES:
            cluster = True
            url = CLUSTER_SCHEMES[scheme] + url[len(scheme):]
        if cluster and scheme == "unix":
            raise ConfigError("REDIS_CLUSTER cannot use a unix:// socket URL")
    if bool(sentinels) != bool(values["redis_sentinel_master"]):
        raise ConfigError("REDIS_SENTINELS and REDIS_SENTINEL_MASTER must be set together")
    if sentinels and (url or cluster):
        raise ConfigError("REDIS_SENTINELS cannot be combined with REDIS_URL or REDIS_CLUSTER")
    if bool(values["redis_tls_cert"]) != bool(values["redis_tls_key"]):
        raise ConfigError("REDIS_TLS_CERT and REDIS_TLS_KEY must be set together")
    settings = RedisSettings(
        url=url,
        host=host or "localhost",
        port=values["redis_port"],
        username=values["redis_username"] or None,
        password=values["redis_password"] or None,
        tls=values["redis_tls"],
        embedded=url is None and host is None and not sentinels,
        tls_ca=values["redis_tls_ca"],
        tls_cert=values["redis_tls_cert"],
        tls_key=values["redis_tls_key"],
        cluster=cluster,
        sentinels=sentinels,
        sentinel_master=values["redis_sentinel_master"],
        sentinel_password=values["redis_sentinel_password"] or None,
    )
    if (settings.tls_ca or settings.tls_cert) and not settings.uses_tls:
        raise ConfigError(
            "REDIS_TLS_CA/REDIS_TLS_CERT need TLS: use a rediss:// URL or REDIS_TLS=true"
        )
    return settings
