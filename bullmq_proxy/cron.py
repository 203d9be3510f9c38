"""Cron schedules of job schedulers, checked before anything is stored.

bullmq computes a scheduler's next run with croniter, seconds first in six-field patterns as
Node BullMQ's cron-parser reads them; a Node worker of the same queue later computes the runs
after it with cron-parser. So only the syntax both share is accepted: five or six fields,
numbers, names, ranges, steps, lists, ``L`` and ``#`` (no ``@hourly`` aliases, no hashed
``H``), and the pattern must fire at least once.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo

from croniter import croniter

MAX_PATTERN_LENGTH = 256


class ScheduleError(ValueError):
    """A pattern or time zone that cannot schedule anything; the message says why."""


def time_zone(name: str) -> tzinfo:
    """An IANA time zone such as ``Europe/Paris``."""
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError):
        raise ScheduleError(f"{name[:64]!r} is not an IANA time zone such as Europe/Paris") \
            from None


def next_run(pattern: str, zone: tzinfo | None, after_ms: int) -> int:
    """The first run of ``pattern`` after ``after_ms`` (epoch ms), as bullmq computes it."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise ScheduleError(f"a cron pattern has at most {MAX_PATTERN_LENGTH} characters")
    if len(pattern.split()) not in (5, 6):
        raise ScheduleError("a cron pattern has 5 fields, or 6 with seconds first "
                            "(e.g. \"*/10 * * * * *\")")
    try:
        base = datetime.fromtimestamp(after_ms / 1000, tz=zone or UTC)
        runs = croniter(pattern, base, second_at_beginning=True)
        return int(runs.get_next(datetime).timestamp() * 1000)
    except (ValueError, KeyError, OverflowError) as err:
        # croniter's errors are ValueErrors that say what is wrong ("out of range", "failed
        # to find next date").
        raise ScheduleError(f"{pattern!r} is not a valid cron pattern: {err}") from None
