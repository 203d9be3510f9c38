"""The ``reuseport:`` server endpoint string, e.g. ``--listen reuseport:8080``."""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IStreamServerEndpointStringParser
from twisted.plugin import IPlugin
from zope.interface import implementer


@implementer(IPlugin, IStreamServerEndpointStringParser)
class ReusePortParser:
    prefix = "reuseport"

    def parseStreamServer(self, reactor: Any, *args: str, **kwargs: str) -> Any:
        from bullmq_proxy.reuseport import parse_endpoint

        return parse_endpoint(reactor, *args, **kwargs)


reusePort = ReusePortParser()
