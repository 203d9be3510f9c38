"""What a registration shows of its secrets: nothing. Endpoint URLs lose their userinfo and
their query values, headers their values (but for a few that never carry credentials), and
signing secrets are write-only."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "[redacted]"
# Headers whose values say how to talk, never who is talking.
HARMLESS_HEADERS = frozenset({
    "accept", "accept-encoding", "accept-language", "cache-control", "content-language",
    "content-type", "user-agent",
})


def redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
        query = urlencode([(key, REDACTED) for key, _ in
                           parse_qsl(parts.query, keep_blank_values=True)], safe="[]")
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        return REDACTED


def redact_registration(stored: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(stored.get("endpoint"), dict):
        return stored
    endpoint = dict(stored["endpoint"])
    if "signingSecret" in endpoint:
        endpoint["signingSecret"] = REDACTED
    if isinstance(endpoint.get("url"), str):
        endpoint["url"] = redact_url(endpoint["url"])
    headers = endpoint.get("headers")
    if isinstance(headers, dict):
        endpoint["headers"] = {
            name: value if str(name).lower() in HARMLESS_HEADERS else REDACTED
            for name, value in headers.items()
        }
    return {**stored, "endpoint": endpoint}
