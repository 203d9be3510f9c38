"""Helpers shared by the tests: a proxy built around the test Redis, driven by StubTreq."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import attrs
from treq.testing import StubTreq
from twisted.application.service import MultiService
from twisted.internet import defer, task
from twisted.python.failure import Failure

from bullmq_proxy.bridge import as_deferred, as_future
from bullmq_proxy.config import Config, RedisSettings
from bullmq_proxy.http.site import build_site
from bullmq_proxy.service import ProxyContext, SequentialMultiService, build_context
from tests.api_contract import ApiContract

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T = TypeVar("T")


def make_config(redis_url: str = "redis://127.0.0.1:1/0", **overrides: Any) -> Config:
    defaults: dict[str, Any] = {"auth_tokens": (TOKEN,), "redis": RedisSettings(url=redis_url)}
    # HTTP_SERVER=twisted runs the suite on Twisted Web's channel instead of the lean one
    # (tests/test_http_hostile.py then fails: that channel has none of those limits).
    if "HTTP_SERVER" in os.environ:
        defaults["http_server"] = os.environ["HTTP_SERVER"]
    defaults.update(overrides)
    return Config(**defaults)


@attrs.define
class Proxy:
    """A proxy context with its services, and a StubTreq client on its resource tree."""

    context: ProxyContext
    services: MultiService
    stub: StubTreq
    contract: ApiContract | None = None

    async def request(
        self, method: str, path: str, *, json_body: Any = None, body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, Any]:
        """(status, decoded body, headers) of one request through the real resource tree."""
        from twisted.internet import reactor

        sent_headers = {"Content-Type": "application/json", **(headers or {})}
        if json_body is not None:
            body = json.dumps(json_body).encode()
        d = self.stub.request(method, "http://proxy" + path, data=body, headers=sent_headers)
        response = await wait_for_stub(self.stub, d, reactor)
        content = await wait_for_stub(self.stub, response.content(), reactor)
        content_type = response.headers.getRawHeaders("content-type", [""])[0]
        decoded: Any = content.decode()
        if "json" in content_type:
            decoded = json.loads(content)
        if self.contract is None:
            self.contract = ApiContract(self.context.router.routes)
        self.contract.check(method, path, response.code, content_type, decoded)
        return response.code, decoded, response.headers

    async def stop(self) -> None:
        await self.services.stopService()


async def wait_for_stub(stub: StubTreq, d: defer.Deferred[T], reactor: Any) -> T:
    """StubTreq delivers NOT_DONE_YET responses only when flushed: pump until ``d`` fires."""
    outcome: list[Any] = []
    d.addBoth(outcome.append)
    for _ in range(4000):
        stub.flush()
        if outcome:
            break
        await task.deferLater(reactor, 0.005)
    else:
        raise AssertionError("the proxy did not answer within 20 seconds")
    result = outcome[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result


async def start_proxy(config: Config) -> Proxy:
    from twisted.internet import reactor

    services = SequentialMultiService()
    context = build_context(config, reactor, services)
    services.startService()
    stub = StubTreq(context.root)
    # StubTreq serves the tree with a plain twisted.web Site; its agent builds the server
    # side of each in-memory connection from this factory, so swapping it makes every
    # StubTreq request go through the channel the configuration chooses.
    stub._agent._serverFactory = build_site(config, context.root, reactor,
                                            context.metrics.observe_request)
    return Proxy(context, services, stub)


def aio(awaitable: Awaitable[T]) -> defer.Deferred[T]:
    """Await an asyncio coroutine from a Twisted-driven test."""
    return as_deferred(awaitable)  # type: ignore[arg-type]


@attrs.define
class LiveProxy:
    """A proxy built in this process, listening on a real loopback port."""

    proxy: Proxy
    port: Any

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port.getHost().port}"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port.getHost().port}"

    @property
    def context(self) -> ProxyContext:
        return self.proxy.context

    @property
    def workers(self) -> Any:
        return self.proxy.services.getServiceNamed("workers")

    async def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any, Any]:
        return await self.proxy.request(method, path, **kwargs)

    async def stop(self) -> None:
        await self.port.stopListening()
        await self.proxy.stop()

    def stop_from_asyncio(self) -> Any:
        """``stop`` for a test running on asyncio (see ``ws_support.on_asyncio``)."""
        return as_future(defer.ensureDeferred(self.stop()))


async def start_live_proxy(config: Config) -> LiveProxy:
    from twisted.internet import reactor

    proxy = await start_proxy(config)
    site = build_site(config, proxy.context.root, reactor,
                      proxy.context.metrics.observe_request)
    return LiveProxy(proxy, reactor.listenTCP(0, site, interface="127.0.0.1"))


async def until(check: Callable[[], Any], what: str, timeout: float = 15) -> None:
    """In asyncio code: poll ``check`` until it is true (a deadline, not a timing claim)."""
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
