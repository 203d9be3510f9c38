"""Who a token is and what it may do: rights, queue scopes and request rates.

A token of AUTH_TOKENS has every right on every queue, as in the original. A token of the
token file (``TOKENS_FILE``, see ``tokens.py``) has the rights and queue patterns listed for
it. Every check goes through ``Principal.may``: the REST router, the WebSocket upgrade and
each WebSocket command ask it, nothing else decides.
"""

from __future__ import annotations

import enum
import fnmatch
import math
from collections.abc import Callable

import attrs

from bullmq_proxy.errors import FORBIDDEN, RATE_LIMITED, ProxyError


class Right(enum.Enum):
    READ = "read"        # list and read jobs, queues, schedulers, events
    WRITE = "write"      # add jobs and flows
    MANAGE = "manage"    # pause, resume, clean, drain, obliterate, job actions, schedulers, limits
    WORKERS = "workers"  # register and remove HTTP workers; pull and push consumption
    ADMIN = "admin"      # everything, /metrics included


RIGHT_NAMES = tuple(right.value for right in Right)


@attrs.frozen
class Rate:
    """A token bucket: ``per_second`` requests refill it, ``burst`` is its size."""

    per_second: float
    burst: int


@attrs.frozen
class Principal:
    name: str
    queues: tuple[str, ...] = ("*",)
    rights: frozenset[Right] = frozenset(Right)
    rate: Rate | None = None

    def may(self, right: Right, queue: str | None = None) -> bool:
        if Right.ADMIN not in self.rights and right not in self.rights:
            return False
        return queue is None or self.covers(queue)

    def covers(self, queue: str) -> bool:
        # "*" first: it is every token of AUTH_TOKENS, and matching it was 1 % of an add.
        return "*" in self.queues or any(
            fnmatch.fnmatchcase(queue, pattern) for pattern in self.queues)

    def require(self, right: Right, queue: str | None = None) -> None:
        """Raise the 403 problem naming the missing right (and the queue out of scope)."""
        if Right.ADMIN not in self.rights and right not in self.rights:
            raise ProxyError(FORBIDDEN, f"This token lacks the {right.value!r} right.",
                             right=right.value)
        if queue is not None and not self.covers(queue):
            raise ProxyError(FORBIDDEN, f"This token may not use queue {queue!r}.",
                             "queueName", right=right.value, queue=queue)


FULL_ACCESS = Principal("auth-tokens")


class RateLimiter:
    """One token bucket per principal name, refilled by the injected clock."""

    def __init__(self, clock: Callable[[], float], default: Rate | None = None,
                 limited: Callable[[str], None] | None = None) -> None:
        self._clock = clock
        self._default = default
        self._limited = limited
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, principal: Principal) -> None:
        """Spend one request of the principal's bucket, or raise 429 with Retry-After."""
        rate = principal.rate or self._default
        if rate is None:
            return
        now = self._clock()
        level, then = self._buckets.get(principal.name, (float(rate.burst), now))
        level = min(float(rate.burst), level + (now - then) * rate.per_second)
        if level < 1:
            wait = math.ceil((1 - level) / rate.per_second)
            self._buckets[principal.name] = (level, now)
            if self._limited is not None:
                self._limited(principal.name)
            raise ProxyError(RATE_LIMITED, f"Token {principal.name!r} is over its rate of "
                                           f"{rate.per_second:g} requests a second.",
                             headers={"Retry-After": str(max(1, wait))})
        self._buckets[principal.name] = (level - 1, now)
