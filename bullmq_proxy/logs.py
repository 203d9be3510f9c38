"""Log output: JSON lines for ``--log-format json``, and a Logger whose text fields cannot
split or forge log lines."""

from __future__ import annotations

import sys
from typing import Any

from twisted.logger import ILogObserver, LogLevel, jsonFileLogObserver

from twisted import logger


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


def json_observer_factory() -> ILogObserver:
    """One JSON object per event on standard output, for log shippers."""
    return jsonFileLogObserver(sys.stdout, recordSeparator="")
