"""Every numeric bound of the API, declared once: the validators check input against these
ranges, the docs quote them and the tests probe both ends of each.

Why these limits: BullMQ's scripts store a job's options again with Redis's cjson, which
writes an integer of 15 digits or more as ``1e+14``; bullmq (Python) then reads a float, and
takes ``removeOnComplete: 1e+14`` as ``true``. So no integer of a job or worker option may
reach 10^14. Indexes never pass through cjson, but Node BullMQ reads them as doubles, so they
stop at 2^53 - 1 (``Number.MAX_SAFE_INTEGER``). A duration must stay a time the proxy's timers
and Redis's expiries can hold. Each limit is far beyond any real use, and a value outside it
is a 400 naming the field, never a stored time bomb.
"""

from __future__ import annotations

from typing import Any

import attrs

MAX_SAFE_INTEGER = 2**53 - 1
# The largest integer that Redis's cjson writes back as an integer (14 digits).
MAX_STORED_INTEGER = 10**14 - 1
DAY_MS = 86_400_000
# Ten years: any delay, repeat interval or rate window a queue can mean.
MAX_DELAY_MS = 3650 * DAY_MS
# The last instant of 5138, as epoch milliseconds: MAX_STORED_INTEGER.
MAX_TIMESTAMP_MS = MAX_STORED_INTEGER
# How deep a JSON document may nest. Past a few hundred levels the JSON codecs of Python and
# msgpack recurse out of stack; no job data needs more than this.
MAX_JSON_DEPTH = 128


def is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@attrs.frozen
class Range:
    """An inclusive integer range, with the unit the docs give it."""

    minimum: int
    maximum: int
    unit: str = ""

    def __contains__(self, value: Any) -> bool:
        return is_integer(value) and self.minimum <= value <= self.maximum

    def describe(self) -> str:
        unit = f" ({self.unit})" if self.unit else ""
        return f"an integer between {self.minimum} and {self.maximum}{unit}"


# Job options (BullMQ's JobsOptions).
DELAY = Range(0, MAX_DELAY_MS, "ms")
POSITIVE_DELAY = Range(1, MAX_DELAY_MS, "ms")
AGE = Range(0, MAX_DELAY_MS // 1000, "seconds")
COUNT = Range(0, MAX_STORED_INTEGER)
POSITIVE_COUNT = Range(1, MAX_STORED_INTEGER)
TIMESTAMP = Range(0, MAX_TIMESTAMP_MS, "ms since the epoch")
# BullMQ's own limit (2^21), from 1 as the original proxy had it.
PRIORITY = Range(1, 2_097_152)
SIZE_LIMIT = Range(1, MAX_STORED_INTEGER, "bytes")

# Paging: REST pages of at most 100, WebSocket reads of at most 1000 jobs.
INDEX = Range(0, MAX_SAFE_INTEGER)
PAGE_LENGTH = Range(1, 100)
MAX_JOBS_PER_CALL = 1000

# Workers. Each concurrency slot is a task and, today, a Redis connection of its own.
CONCURRENCY = Range(1, 1000)
ENDPOINT_TIMEOUT = Range(1, 3_600_000, "ms")
# How long a job answered 202 may stay unsettled; also the longest POST .../lock duration.
ASYNC_TIMEOUT = Range(1, 7 * DAY_MS, "ms")
LIMITER_MAX = Range(1, MAX_STORED_INTEGER)
LIMITER_DURATION = Range(1, MAX_DELAY_MS, "ms")
STALLED_COUNT = Range(0, MAX_STORED_INTEGER)
