"""The floor of workload A: a Twisted Web resource on the asyncio reactor that reads each POST
and answers a fixed job list, with no Redis and no proxy code behind it.

``python -m benchmarks.bare_web PORT`` serves until it is terminated.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet import asyncioreactor

ANSWER = b'[{"id":"1","name":"bench"}]'


def main() -> None:
    asyncioreactor.install()
    from twisted.internet import reactor
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    class Jobs(Resource):
        isLeaf = True

        def render_POST(self, request: Any) -> bytes:
            request.content.read()
            request.setHeader(b"content-type", b"application/json")
            return ANSWER

    reactor.listenTCP(int(sys.argv[1]), Site(Jobs()), interface="127.0.0.1")
    reactor.run()


if __name__ == "__main__":
    main()
