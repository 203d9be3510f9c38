"""The server floor: the least CPU one REST request can cost on this stack. A resource that
reads each POST and answers a fixed job list, with no Redis and no proxy code behind it, on
the asyncio reactor, served by Twisted Web's ``Site`` or by the proxy's lean channel.

``python -m benchmarks.floors.server twisted|lean PORT`` serves until it is terminated.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet import asyncioreactor

ANSWER = b'[{"id":"1","name":"bench"}]'


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    asyncioreactor.install()
    from twisted.internet import reactor
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    from bullmq_proxy.http.channel import LeanSite

    class Jobs(Resource):
        isLeaf = True

        def render_POST(self, request: Any) -> bytes:
            request.content.read()
            request.setHeader(b"content-type", b"application/json")
            return ANSWER

    if kind == "twisted":
        site: Any = Site(Jobs())
    elif kind == "lean":
        site = LeanSite(Jobs(), reactor, max_body_size=10 * 1024 * 1024, headers_timeout=30,
                        idle_timeout=75)
    else:
        raise SystemExit(f"usage: {sys.argv[0]} twisted|lean PORT")
    reactor.listenTCP(port, site, interface="127.0.0.1", backlog=1024)
    reactor.run()


if __name__ == "__main__":
    main()
