"""The proxy's error vocabulary, shared by REST (RFC 9457 problems) and WebSocket replies."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import redis.exceptions


@attrs.frozen
class ErrorKind:
    """One kind of error: its problem type slug, title and HTTP status."""

    slug: str
    title: str
    status: int

    @property
    def type_uri(self) -> str:
        return f"/problems/{self.slug}"


INVALID_HTTP = ErrorKind("invalid-http", "Invalid HTTP", 400)
INVALID_JSON = ErrorKind("invalid-json", "Invalid JSON", 400)
INVALID_FIELD = ErrorKind("invalid-field", "Invalid field", 400)
UNKNOWN_FIELD = ErrorKind("unknown-field", "Unknown field", 400)
UNAUTHORIZED = ErrorKind("unauthorized", "Unauthorized", 401)
FORBIDDEN = ErrorKind("forbidden", "Forbidden", 403)
NOT_FOUND = ErrorKind("not-found", "Not found", 404)
METHOD_NOT_ALLOWED = ErrorKind("method-not-allowed", "Method not allowed", 405)
REQUEST_TIMEOUT = ErrorKind("request-timeout", "Request timeout", 408)
CONFLICT = ErrorKind("conflict", "Conflict", 409)
# Add and wait: the job ran and failed; the problem carries the job.
JOB_FAILED = ErrorKind("job-failed", "Job failed", 502)
PAYLOAD_TOO_LARGE = ErrorKind("payload-too-large", "Payload too large", 413)
HEADERS_TOO_LARGE = ErrorKind("headers-too-large", "Request headers too large", 431)
RATE_LIMITED = ErrorKind("rate-limited", "Rate limited", 429)
INTERNAL = ErrorKind("internal", "Internal error", 500)
REDIS_UNAVAILABLE = ErrorKind("redis-unavailable", "Redis unavailable", 503)
NOT_READY = ErrorKind("not-ready", "Not ready", 503)
TIMEOUT = ErrorKind("timeout", "Timeout", 504)


class ProxyError(Exception):
    """An error with a kind from the vocabulary, a sentence for the user and, for bad input,
    the offending field."""

    def __init__(
        self,
        kind: ErrorKind,
        detail: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.field = field
        self.headers = headers or {}
        # Members the problem type adds (a conflict's current ``state``...).
        self.extra = extra

    def problem(self, instance: str) -> dict[str, Any]:
        """The RFC 9457 body."""
        body: dict[str, Any] = {
            "type": self.kind.type_uri,
            "title": self.kind.title,
            "status": self.kind.status,
            "detail": self.detail,
        }
        if self.field is not None:
            body["field"] = self.field
        body.update(self.extra)
        body["instance"] = instance
        return body

    def ws_error(self) -> dict[str, Any]:
        """The ``err`` value of a WebSocket reply."""
        err: dict[str, Any] = {"message": self.detail, "code": self.kind.slug}
        if self.field is not None:
            err["field"] = self.field
        err.update(self.extra)
        return err


def invalid(field: str, detail: str) -> ProxyError:
    return ProxyError(INVALID_FIELD, detail, field)


def unknown(field: str) -> ProxyError:
    return ProxyError(UNKNOWN_FIELD, f"{field} is not an accepted field", field)


def classify(err: BaseException) -> ProxyError | None:
    """Map an infrastructure failure to its error kind; None for a bug."""
    if isinstance(err, ProxyError):
        return err
    if isinstance(err, asyncio.TimeoutError | redis.exceptions.TimeoutError):
        return ProxyError(TIMEOUT, "Redis did not answer in time; try again later.")
    if isinstance(err, redis.exceptions.ConnectionError | ConnectionError):
        return ProxyError(
            REDIS_UNAVAILABLE,
            "Redis is unavailable; try again later.",
            headers={"Retry-After": "1"},
        )
    return None
