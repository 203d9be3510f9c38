"""Which socket a request asks for: ``/ws/queues/:queueName`` and its ``/process/:n`` and
``/events`` variants, decoded once and validated before the handshake."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence

import attrs

from bullmq_proxy.bounds import CONCURRENCY
from bullmq_proxy.config import Config
from bullmq_proxy.core.events import EVENT_NAMES
from bullmq_proxy.errors import NOT_FOUND, ProxyError, invalid
from bullmq_proxy.validation import validate_queue_name
from bullmq_proxy.web import split_path


class Kind(enum.Enum):
    QUEUE = "queue"
    WORKER = "worker"
    EVENTS = "events"


@attrs.frozen
class Target:
    kind: Kind
    queue: str
    concurrency: int = 0
    events: tuple[str, ...] = ()


def validate_events(names: Sequence[str], field: str) -> tuple[str, ...]:
    for name in names:
        if name not in EVENT_NAMES:
            raise invalid(field, f"{field}: {name!r} is not one of {', '.join(EVENT_NAMES)}")
    return tuple(dict.fromkeys(names))


def _concurrency(raw: str) -> int:
    # ASCII digits only: str.isdigit() is also true of "²", which int() refuses.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6) or int(raw) not in CONCURRENCY:
        raise invalid("concurrency", f"concurrency must be {CONCURRENCY.describe()}")
    return int(raw)


def parse_target(raw_path: bytes, query: Mapping[str, Sequence[str]], config: Config) -> Target:
    """``raw_path`` is the request target as sent (still percent-encoded, query allowed)."""
    segments = split_path(raw_path)
    if len(segments) < 3 or segments[:2] != ("ws", "queues"):
        raise ProxyError(NOT_FOUND, "There is no such WebSocket; use /ws/queues/:queueName.")
    queue = validate_queue_name(segments[2], config)
    rest = segments[3:]
    if not rest:
        return Target(Kind.QUEUE, queue)
    if len(rest) == 2 and rest[0] == "process":
        return Target(Kind.WORKER, queue, concurrency=_concurrency(rest[1]))
    if rest == ("events",):
        names = [n.strip() for value in query.get("events", ()) for n in value.split(",")]
        events = validate_events([n for n in names if n], "events")
        return Target(Kind.EVENTS, queue, events=events or EVENT_NAMES)
    raise ProxyError(NOT_FOUND, "There is no such WebSocket; use /ws/queues/:queueName, "
                                "/ws/queues/:queueName/process/:concurrency or "
                                "/ws/queues/:queueName/events.")
