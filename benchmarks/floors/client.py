"""The client floor: the CPU one endpoint call costs on each HTTP client the proxy could use,
against nginx answering ``200 done``. Each kind makes CALLS POSTs of a small JSON body,
CONCURRENCY at a time, on kept-alive connections, and reads every answer whole.

``python -m benchmarks.floors.client KIND URL CALLS CONCURRENCY`` prints one JSON line.
Kinds: ``treq`` (treq on Twisted's ``Agent``, as the proxy called endpoints before its own
agent), ``agent`` (Twisted's ``Agent`` and ``readBody``, no treq), ``treq-lean`` (treq on the
proxy's agent, what the workers use), ``lean`` (the proxy's agent alone, no treq).
"""

from __future__ import annotations

import functools
import json
import resource
import sys
import time
from typing import Any

from twisted.internet import asyncioreactor

BODY = json.dumps({"id": "1", "name": "bench", "data": {"n": 1, "text": "hello"}}).encode()
HEADERS = {"Content-Type": "application/json", "BullMQ-Proxy-Job-Id": "1"}


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def calling(kind: str, reactor: Any, concurrency: int) -> Any:
    """A function (url) -> Deferred of the answer's body, for ``kind``."""
    import treq
    from twisted.web.client import Agent, HTTPConnectionPool, readBody
    from twisted.web.http_headers import Headers

    from bullmq_proxy.workers import http_client

    if kind in ("treq", "agent"):
        pool = HTTPConnectionPool(reactor)
        pool.maxPersistentPerHost = concurrency
        agent = Agent(reactor, pool=pool)
    elif kind == "lean":
        agent = http_client.EndpointAgent(reactor, max_idle_per_host=concurrency)
    if kind == "treq":
        client = treq.client.HTTPClient(agent, data_to_body_producer=http_client.ImmediateBody)

        def call(url: str) -> Any:
            d = client.request("POST", url, data=BODY, headers=HEADERS, unbuffered=True)
            return d.addCallback(treq.content)

        return call
    if kind == "treq-lean":
        # The proxy's own client, called as workers/dispatcher.py calls it.
        lean, lean_agent = http_client.endpoint_client(reactor)
        lean_agent.maxPersistentPerHost = concurrency
        encoded = functools.cache(http_client.EndpointURL.of)

        def call_lean(url: str) -> Any:
            d = lean.request("POST", encoded(url), data=BODY, headers=HEADERS, unbuffered=True,
                             allow_redirects=False, cookies=http_client.NO_COOKIES)
            return d.addCallback(treq.content)

        return call_lean
    headers = Headers({name: [value] for name, value in HEADERS.items()})

    def call_agent(url: str) -> Any:
        d = agent.request(b"POST", url.encode(), headers, http_client.ImmediateBody(BODY))
        return d.addCallback(readBody)

    return call_agent


def main() -> None:
    kind, url, calls, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    asyncioreactor.install()
    from twisted.internet import defer, reactor

    call = calling(kind, reactor, concurrency)
    outcome: dict[str, Any] = {}

    async def loop(share: int) -> None:
        for _ in range(share):
            body = await call(url)
            assert body == b"done", body

    async def run() -> None:
        # One warm-up call a connection, then the measured ones.
        await defer.gatherResults([defer.ensureDeferred(loop(1)) for _ in range(concurrency)])
        started, used = time.perf_counter(), cpu()
        await defer.gatherResults([defer.ensureDeferred(loop(calls // concurrency))
                                   for _ in range(concurrency)])
        outcome.update(kind=kind, calls=calls // concurrency * concurrency,
                       seconds=time.perf_counter() - started, cpu_s=cpu() - used)

    d = defer.ensureDeferred(run())
    d.addErrback(lambda failure: outcome.update(error=failure.getErrorMessage()))
    d.addBoth(lambda _: reactor.stop())
    reactor.run()
    print(json.dumps(outcome))


if __name__ == "__main__":
    main()
