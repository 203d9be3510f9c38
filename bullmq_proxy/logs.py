"""Log output: JSON lines for ``--log-format json``."""

from __future__ import annotations

import sys

from twisted.logger import ILogObserver, jsonFileLogObserver


def json_observer_factory() -> ILogObserver:
    """One JSON object per event on standard output, for log shippers."""
    return jsonFileLogObserver(sys.stdout, recordSeparator="")
