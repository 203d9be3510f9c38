"""What serves the resource tree: a plain root resource with ``/ws`` for WebSockets and the
REST router for everything else, on the lean channel (``http/channel.py``) or, chosen by
``HTTP_SERVER=twisted``, on Twisted Web's own ``Site`` with a request class that stops
buffering oversize bodies."""

from __future__ import annotations

from typing import Any

from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site

from bullmq_proxy.config import Config
from bullmq_proxy.http.channel import LeanSite
from bullmq_proxy.http.router import RequestObserver


class BoundedRequest(Request):
    """Drops body bytes past the site's limit, so a huge upload never fills memory or disk;
    the router then answers 413."""

    too_large = False
    _received = 0

    def gotLength(self, length: int | None) -> None:
        limit = self.channel.site.max_body_size
        if length is not None and length > limit:
            self.too_large = True
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        self._received += len(data)
        if self._received > self.channel.site.max_body_size:
            self.too_large = True
        if not self.too_large:
            super().handleContentChunk(data)


class Root(Resource):
    """Children such as ``ws`` win; every other path goes, whole, to the router."""

    def __init__(self, router: IResource) -> None:
        super().__init__()
        self._router = router

    def getChild(self, path: bytes, request: IRequest) -> IResource:
        return self._router

    def render(self, request: IRequest) -> Any:
        return self._router.render(request)


class ProxySite(Site):
    requestFactory = BoundedRequest

    def __init__(self, root: IResource, max_body_size: int) -> None:
        # JSON only: skip Twisted's form parsing, which costs a MIME header parse per POST.
        super().__init__(root, parsePOSTFormSubmission=False)
        self.max_body_size = max_body_size

    def log(self, request: IRequest) -> None:
        """The router logs requests through twisted.logger; no separate access log."""


def build_site(config: Config, root: IResource, reactor: Any,
               observe: RequestObserver | None = None) -> LeanSite | ProxySite:
    """The HTTP server factory the configuration asks for; ``observe`` counts the requests
    the lean channel refuses before they reach the router."""
    if config.http_server == "twisted":
        site = ProxySite(root, config.max_body_size)
        site.timeOut = config.http_idle_timeout
        return site
    return LeanSite(root, reactor, max_body_size=config.max_body_size,
                    headers_timeout=config.http_headers_timeout,
                    idle_timeout=config.http_idle_timeout, observe=observe)
