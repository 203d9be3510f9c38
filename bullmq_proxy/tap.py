"""The twistd entry point: ``twistd bullmq-proxy`` options and ``makeService``.

Importing this module installs Twisted's asyncio reactor unless a reactor is already
installed; twistd imports it only when the bullmq-proxy subcommand is chosen, so other
twistd plugins are not affected.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.application.service import MultiService
from twisted.python import usage

from bullmq_proxy.bridge import install_asyncio_reactor

if "twisted.internet.reactor" not in sys.modules:
    install_asyncio_reactor()

from twisted.internet import reactor

from bullmq_proxy.config import SETTINGS, Config, ConfigError, load_config
from bullmq_proxy.service import build_service


def _help(env: str | None, text: str, default: Any) -> str:
    source = f" [env {env}]" if env else ""
    shown = f" (default: {default})" if default not in (None, (), "") else ""
    return f"{text}{source}{shown}"


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run the BullMQ proxy. Every option can also be given by its environment variable; "
        "options win over the environment."
    )
    optParameters = [  # noqa: RUF012 - Twisted reads this class attribute
        [s.option, None, None, _help(s.env, s.help, s.default)] for s in SETTINGS
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["plugin"] = []
        self.config: Config | None = None

    def opt_listen(self, description: str) -> None:
        """A Twisted server endpoint to listen on, e.g. tcp:8080 or
        systemd:domain=INET:index=0 (repeatable; default tcp:$PORT or tcp:8080)."""
        self["listen"].append(description)

    def opt_plugin(self, name: str) -> None:
        """Enable an optional plugin from the bullmq_proxy.plugins entry points
        (repeatable)."""
        self["plugin"].append(name)

    def postOptions(self) -> None:
        from twisted.internet.asyncioreactor import AsyncioSelectorReactor

        if not isinstance(reactor, AsyncioSelectorReactor):
            raise usage.UsageError(
                "bullmq-proxy runs on Twisted's asyncio reactor; drop --reactor "
                "(or pass --reactor=asyncio)"
            )
        try:
            self.config = load_config(
                os.environ, self, tuple(self["listen"]), tuple(self["plugin"])
            )
        except ConfigError as err:
            raise SystemExit(f"bullmq-proxy: {err}") from None
        if self.config.log_format == "json" and self.parent is not None:
            # twistd resolves its --logger option by name once all options are parsed.
            self.parent["logger"] = "bullmq_proxy.logs.json_observer_factory"


def makeService(options: Options) -> MultiService:
    assert options.config is not None, "postOptions builds the configuration"
    try:
        return build_service(options.config, reactor)
    except ConfigError as err:
        raise SystemExit(f"bullmq-proxy: {err}") from None
