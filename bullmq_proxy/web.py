"""What the REST router and the WebSocket upgrade share of Twisted Web: path segments
decoded once, and problem documents written to a request."""

from __future__ import annotations

import json
from urllib.parse import unquote_to_bytes

from twisted.web.iweb import IRequest

from bullmq_proxy.errors import INVALID_FIELD, ProxyError

PROBLEM_TYPE = b"application/problem+json"


def split_path(raw_path: bytes) -> tuple[str, ...]:
    """Path segments, each percent-decoded exactly once (``%2F`` stays inside its segment)."""
    parts = raw_path.split(b"?", 1)[0].split(b"/")
    segments = parts[1:]
    if segments and segments[-1] == b"":
        segments.pop()
    try:
        if b"%" not in raw_path:
            return tuple(part.decode("utf-8") for part in segments)
        return tuple(unquote_to_bytes(part).decode("utf-8") for part in segments)
    except UnicodeDecodeError:
        raise ProxyError(INVALID_FIELD, "The path is not valid UTF-8 once decoded.", "path") \
            from None


def write_problem(request: IRequest, error: ProxyError, instance: str | None = None) -> None:
    request.setResponseCode(error.kind.status)
    for name, value in error.headers.items():
        request.setHeader(name, value)
    request.setHeader(b"content-type", PROBLEM_TYPE)
    instance = instance or request.path.decode("utf-8", "replace")
    body = json.dumps(error.problem(instance)).encode("utf-8")
    # A known length lets either HTTP channel send the whole answer in one write, unchunked.
    request.setHeader(b"content-length", b"%d" % len(body))
    request.write(body)
    request.finish()
