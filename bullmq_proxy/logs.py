"""Log output: text or JSON lines, at info level unless ``--debug``; and a Logger
whose text fields cannot split or forge log lines.

twistd takes its log observer as a factory named by ``--logger``; ``tap.py`` configures
``twistd_observer`` with the proxy's settings and names it there.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import IO, Any

import attrs
from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    ILogFilterPredicate,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    PredicateResult,
    formatEvent,
    textFileLogObserver,
)
from twisted.python.logfile import LogFile
from zope.interface import implementer

from twisted import logger

# Twisted logs these for every connection a client factory makes (one per endpoint call when
# the endpoint closes its connections); they say nothing an operator acts on.
FACTORY_CHATTER = frozenset({"Starting factory {factory!r}", "Stopping factory {factory!r}"})
# Keys of Twisted's legacy log events, rendered into the message already.
LEGACY_KEYS = frozenset({"message", "format", "isError", "why", "failure", "time", "system",
                         "printed"})
LEVEL_NAMES = {LogLevel.debug: "debug", LogLevel.info: "info", LogLevel.warn: "warning",
               LogLevel.error: "error", LogLevel.critical: "critical"}


def escape(text: str) -> str:
    """``text`` with its control (non-printable) characters written as escapes, ``\\n``."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


class Logger(logger.Logger):
    """twisted's Logger, with every text field escaped: queue names, paths and error
    messages come from clients, and a newline in one would start a line of its own."""

    def emit(self, level: LogLevel, format: str | None = None, **kwargs: Any) -> None:
        for key, value in kwargs.items():
            if isinstance(value, str):
                kwargs[key] = escape(value)
        super().emit(level, format, **kwargs)




@implementer(ILogFilterPredicate)
class QuietFactories:
    """Drops the factory start and stop events (debug output keeps them)."""

    def __call__(self, event: dict[str, Any]) -> PredicateResult:
        if event.get("log_format") in FACTORY_CHATTER:
            return PredicateResult.no
        return PredicateResult.maybe


def json_line(event: dict[str, Any]) -> str:
    """One event as one JSON object: ``time`` (RFC 3339, UTC), ``level``, ``logger``,
    ``message`` (the formatted text), the event's own fields, and for a failure its
    ``error`` and ``traceback``."""
    level = event.get("log_level", LogLevel.info)
    record: dict[str, Any] = {
        "time": datetime.fromtimestamp(event.get("log_time", 0), UTC)
        .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": LEVEL_NAMES.get(level, level.name),
        "logger": event.get("log_namespace", "-"),
        "message": formatEvent(event),
    }
    system = event.get("log_system")
    if system not in (None, "-"):
        record["system"] = system
    for key, value in event.items():
        if not key.startswith("log_") and key not in LEGACY_KEYS and key not in record:
            record[key] = value
    failure = event.get("log_failure")
    if failure is not None:
        record["error"] = f"{failure.type.__name__}: {failure.getErrorMessage()}"
        record["traceback"] = failure.getTraceback()
    return json.dumps(record, default=repr, ensure_ascii=False) + "\n"


def json_file_observer(out: IO[str]) -> ILogObserver:
    return FileLogObserver(out, json_line)


def filtered(observer: ILogObserver, debug: bool) -> ILogObserver:
    level = LogLevel.debug if debug else LogLevel.info
    predicates: list[ILogFilterPredicate] = [LogLevelFilterPredicate(level)]
    if not debug:
        predicates.append(QuietFactories())
    return FilteringLogObserver(observer, predicates)


@attrs.define
class ObserverFactory:
    """What twistd's ``--logger`` calls once logging starts."""

    log_format: str = "text"
    debug: bool = False
    logfile: str | None = None

    def __call__(self) -> ILogObserver:
        out: IO[str] = sys.stdout
        if self.logfile not in (None, "", "-"):
            out = LogFile.fromFullPath(self.logfile)  # type: ignore[assignment]
        observer = json_file_observer(out) if self.log_format == "json" \
            else textFileLogObserver(out)
        return filtered(observer, self.debug)


twistd_observer = ObserverFactory()
TWISTD_OBSERVER = f"{__name__}.twistd_observer"
