"""Worker registrations: the original's ``{queue, endpoint, opts}`` body, validated.

The JSON kept in the registry hash is the request body as sent, so that hashes written by the
original proxy and by this one read the same. A registration refused here is never stored, so
the registry follower only ever reads values that BullMQ accepts.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any
from urllib.parse import urlsplit

import attrs

from bullmq_proxy.bounds import (
    ASYNC_TIMEOUT,
    CONCURRENCY,
    ENDPOINT_TIMEOUT,
    LIMITER_DURATION,
    LIMITER_MAX,
    STALLED_COUNT,
)
from bullmq_proxy.config import Config
from bullmq_proxy.errors import ProxyError, invalid
from bullmq_proxy.validation import (
    _validate_keep,
    parse_json,
    refuse_unknown,
    require_in,
    require_object,
    validate_queue_name,
)
from bullmq_proxy.workers.endpoint_policy import policy_of
from bullmq_proxy.workers.http_client import EndpointURL
from bullmq_proxy.workers.signing import validate_secrets

DEFAULT_TIMEOUT_MS = 3000
DEFAULT_ASYNC_TIMEOUT_MS = 300_000
METHODS = frozenset({"POST", "PUT", "PATCH"})
METADATA_FIELDS = frozenset({"queue", "endpoint", "opts"})
# The original's fields, plus this proxy's signingSecret and asyncTimeout.
ENDPOINT_FIELDS = frozenset({
    "url", "method", "headers", "timeout", "signingSecret", "asyncTimeout",
})
OPTS_FIELDS = frozenset({
    "concurrency", "removeOnComplete", "removeOnFail", "limiter", "maxStalledCount",
})
# RFC 9110's token: what a header name may hold.
HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Set by the proxy itself on every call; an endpoint header of the same name would be ambiguous.
RESERVED_HEADERS = frozenset({
    "content-length", "host", "transfer-encoding", "bullmq-proxy-job-id",
    "bullmq-proxy-attempt", "idempotency-key", "webhook-id", "webhook-timestamp",
    "webhook-signature",
})


@attrs.frozen
class Endpoint:
    url: str
    method: str
    headers: dict[str, str]
    timeout_ms: int
    async_timeout_ms: int = DEFAULT_ASYNC_TIMEOUT_MS
    signing_secrets: tuple[str, ...] = attrs.field(default=(), repr=False)


@attrs.frozen
class WorkerMetadata:
    """One validated registration and the exact JSON stored for it."""

    queue: str
    endpoint: Endpoint
    opts: dict[str, Any]
    raw: str = attrs.field(repr=False)

    @property
    def sha(self) -> str:
        """Fingerprint of the stored JSON: a worker is replaced only when it changes."""
        return hashlib.sha256(self.raw.encode("utf-8")).hexdigest()

    @property
    def concurrency(self) -> int:
        return self.opts.get("concurrency", 1)

    def stored(self) -> dict[str, Any]:
        return json.loads(self.raw)


def _validate_url(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise invalid("endpoint.url", "endpoint.url is required")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - urlsplit validates the port lazily
        # What the calls will send: hyperlink is stricter than urlsplit ("http://[::1]a").
        EndpointURL.of(value)
    except ValueError:
        raise invalid("endpoint.url", "endpoint.url is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid("endpoint.url", "endpoint.url must be an http:// or https:// URL")
    if "@" in parts.netloc:
        # Every call would fail: HTTP clients do not turn userinfo into credentials.
        raise invalid("endpoint.url", "endpoint.url must not hold credentials (user:pass@); "
                                      "send them in endpoint.headers, e.g. Authorization")
    if not value.isascii() or not value.isprintable() or " " in value:
        raise invalid("endpoint.url", "endpoint.url must be ASCII without spaces or control "
                                      "characters; percent-encode the rest")
    return value


def _validate_headers(value: Any) -> dict[str, str]:
    headers = require_object(value, "endpoint.headers")
    seen: dict[str, str] = {}
    for name, header in headers.items():
        field = f"endpoint.headers.{name}"
        if not HEADER_NAME.fullmatch(name):
            raise invalid(field, f"{field} is not a valid HTTP header name (RFC 9110 token "
                                 "characters only)")
        if name.lower() in seen:
            raise invalid(field, f"{field} repeats endpoint.headers.{seen[name.lower()]}: "
                                 "header names are case-insensitive")
        seen[name.lower()] = name
        if name.lower() in RESERVED_HEADERS:
            raise invalid(field, f"{field} is set by the proxy and cannot be configured")
        if not isinstance(header, str) or not header.replace("\t", " ").isprintable():
            raise invalid(field, f"{field} must be a single-line string without control "
                                 "characters")
    return headers


def _validate_endpoint(value: Any) -> Endpoint:
    endpoint = require_object(value, "endpoint")
    refuse_unknown(endpoint, ENDPOINT_FIELDS, "endpoint")
    url = _validate_url(endpoint.get("url"))
    method = endpoint.get("method")
    if not isinstance(method, str) or not method:
        raise invalid("endpoint.method", "endpoint.method is required")
    if method.upper() not in METHODS:
        raise invalid("endpoint.method", "endpoint.method must be POST, PUT or PATCH")
    headers = _validate_headers(endpoint["headers"]) if "headers" in endpoint else {}
    timeout = DEFAULT_TIMEOUT_MS
    if "timeout" in endpoint:
        timeout = require_in(endpoint["timeout"], "endpoint.timeout", ENDPOINT_TIMEOUT)
    async_timeout = DEFAULT_ASYNC_TIMEOUT_MS
    if "asyncTimeout" in endpoint:
        async_timeout = require_in(endpoint["asyncTimeout"], "endpoint.asyncTimeout",
                                   ASYNC_TIMEOUT)
    secrets = ()
    if "signingSecret" in endpoint:
        secrets = validate_secrets(endpoint["signingSecret"], "endpoint.signingSecret")
    return Endpoint(url=url, method=method.upper(), headers=headers, timeout_ms=timeout,
                    async_timeout_ms=async_timeout, signing_secrets=secrets)


def _validate_limiter(value: Any) -> None:
    limiter = require_object(value, "opts.limiter")
    refuse_unknown(limiter, frozenset({"max", "duration"}), "opts.limiter")
    for key, bound in (("max", LIMITER_MAX), ("duration", LIMITER_DURATION)):
        if key not in limiter:
            raise invalid(f"opts.limiter.{key}", f"opts.limiter.{key} is required")
        require_in(limiter[key], f"opts.limiter.{key}", bound)


def _validate_opts(value: Any) -> dict[str, Any]:
    opts = require_object(value, "opts")
    refuse_unknown(opts, OPTS_FIELDS, "opts")
    if "concurrency" in opts:
        require_in(opts["concurrency"], "opts.concurrency", CONCURRENCY)
    if "maxStalledCount" in opts:
        require_in(opts["maxStalledCount"], "opts.maxStalledCount", STALLED_COUNT)
    if "limiter" in opts:
        _validate_limiter(opts["limiter"])
    for key in ("removeOnComplete", "removeOnFail"):
        if key in opts:
            _validate_keep(opts[key], f"opts.{key}")
    return opts


def parse_metadata(value: Any, config: Config) -> WorkerMetadata:
    """Validate a registration body; raises ``ProxyError`` naming the bad field."""
    body = require_object(value, "body")
    refuse_unknown(body, METADATA_FIELDS, "")
    queue = body.get("queue")
    if not isinstance(queue, str) or not queue:
        raise invalid("queue", "queue is required and must be a non-empty string")
    try:
        validate_queue_name(queue, config)
    except ProxyError as err:
        raise invalid("queue", err.detail) from None
    if "endpoint" not in body:
        raise invalid("endpoint", "endpoint is required")
    endpoint = _validate_endpoint(body["endpoint"])
    where = urlsplit(endpoint.url)
    refusal = policy_of(config.endpoint_policy, config.endpoint_allow, config.listen).refusal(
        where.hostname or "", where.port or (443 if where.scheme == "https" else 80))
    if refusal is not None:
        raise invalid("endpoint.url", f"endpoint.url: {refusal}; the proxy does not call it "
                                      "(ENDPOINT_POLICY, ENDPOINT_ALLOW)")
    opts = _validate_opts(body["opts"]) if "opts" in body else {}
    raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return WorkerMetadata(queue=queue, endpoint=endpoint, opts=opts, raw=raw)


def check_slots(metadata: WorkerMetadata, in_use: int, limit: int) -> None:
    """Refuse a worker whose concurrency would take the instance past ``WORKER_MAX_SLOTS``
    (``in_use``: the slots of the other queues' workers)."""
    if in_use + metadata.concurrency > limit:
        raise invalid("opts.concurrency",
                      f"opts.concurrency {metadata.concurrency} would take this instance past "
                      f"its {limit} worker slots (WORKER_MAX_SLOTS; {in_use} already used by "
                      "other queues)")


def load_metadata(raw: str, config: Config) -> WorkerMetadata:
    """Read a stored registration; also used for hashes written by the original proxy. Read
    as strictly as a request body: a registration this proxy would refuse is refused."""
    metadata = parse_metadata(parse_json(raw.encode("utf-8", "surrogatepass")), config)
    return attrs.evolve(metadata, raw=raw)
