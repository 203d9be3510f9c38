"""Cross-origin requests from browsers (CORS), off unless CORS_ORIGINS lists origins or ``*``.

Tokens travel in the Authorization header, never in cookies, so answers never allow
credentials: a page of an allowed origin still needs a token to do anything.
"""

from __future__ import annotations

from collections.abc import Sequence

from twisted.web.iweb import IRequest

# Headers a browser page may send, and read from answers, beyond the CORS-safelisted ones.
ALLOWED_HEADERS = "Authorization, Content-Type, Last-Event-ID"
EXPOSED_HEADERS = "Retry-After, Allow, WWW-Authenticate, Location"
PREFLIGHT_MAX_AGE = "600"


class Cors:
    def __init__(self, origins: Sequence[str]) -> None:
        self._any = "*" in origins
        self._origins = frozenset(origin.rstrip("/") for origin in origins if origin != "*")

    @property
    def enabled(self) -> bool:
        return self._any or bool(self._origins)

    def _allowed(self, request: IRequest) -> str | None:
        origin = request.getHeader("origin")
        if origin is None:
            return None
        if self._any:
            return "*"
        return origin if origin in self._origins else None

    def decorate(self, request: IRequest) -> None:
        """The CORS headers of an answer to an allowed origin (none to any other)."""
        if not self.enabled:
            return
        request.setHeader(b"vary", b"Origin")
        allowed = self._allowed(request)
        if allowed is not None:
            request.setHeader(b"access-control-allow-origin", allowed.encode())
            request.setHeader(b"access-control-expose-headers", EXPOSED_HEADERS.encode())

    def preflight_headers(self, request: IRequest, methods: str) -> dict[str, str]:
        """What a preflight (OPTIONS with Access-Control-Request-Method) is answered with."""
        if (not self.enabled or self._allowed(request) is None
                or request.getHeader("access-control-request-method") is None):
            return {}
        return {"Access-Control-Allow-Methods": methods,
                "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                "Access-Control-Max-Age": PREFLIGHT_MAX_AGE}
