"""Helpers for the worker tests: a real endpoint server and a proxy listening on loopback."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import treq
from twisted.internet import defer, task
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from tests.support import AUTH

Answer = tuple[int, dict[str, str], bytes | str]
QUEUE = "{testQueue-e2e}"


@attrs.frozen
class Delivery:
    """One call the proxy made to the endpoint."""

    method: str
    path: str
    headers: dict[str, str]
    raw: bytes

    @property
    def body(self) -> Any:
        return json.loads(self.raw)


class EndpointResource(Resource):
    """An endpoint whose answers come from an async ``handler(delivery)``."""

    isLeaf = True

    def __init__(self, handler: Callable[[Delivery], Awaitable[Answer]]) -> None:
        super().__init__()
        self.handler = handler
        self.deliveries: list[Delivery] = []

    def render(self, request: Any) -> Any:
        delivery = Delivery(
            method=request.method.decode(),
            path=request.path.decode(),
            headers={k.decode().lower(): v[0].decode()
                     for k, v in request.requestHeaders.getAllRawHeaders()},
            raw=request.content.read(),
        )
        self.deliveries.append(delivery)
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def answer(result: Answer) -> None:
            if gone:
                return
            status, headers, body = result
            request.setResponseCode(status)
            for name, value in headers.items():
                request.setHeader(name, value)
            request.write(body.encode() if isinstance(body, str) else body)
            request.finish()

        defer.ensureDeferred(self.handler(delivery)).addCallback(answer)
        return NOT_DONE_YET


@attrs.define
class Endpoint:
    resource: EndpointResource
    port: Any

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port.getHost().port}/hook"

    @property
    def deliveries(self) -> list[Delivery]:
        return self.resource.deliveries

    async def close(self) -> None:
        await self.port.stopListening()


def listen_endpoint(handler: Callable[[Delivery], Awaitable[Answer]]) -> Endpoint:
    from twisted.internet import reactor

    resource = EndpointResource(handler)
    return Endpoint(resource, reactor.listenTCP(0, Site(resource), interface="127.0.0.1"))


async def post_json(url: str, body: Any, token: str) -> tuple[int, str]:
    response = await treq.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
    return response.code, await response.text()


async def eventually(check: Callable[[], Any], timeout: float = 15, what: str = "") -> Any:
    """Poll ``check`` (plain or async) until it returns a truthy value."""
    from twisted.internet import reactor

    for _ in range(int(timeout / 0.05)):
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return result
        await task.deferLater(reactor, 0.05)
    raise AssertionError(f"timed out waiting for {what or check}")


def ok(body: bytes | str = b"", content_type: str = "text/plain") -> Answer:
    return 200, {"Content-Type": content_type}, body


async def register(proxy, url, queue=QUEUE, **endpoint):
    body = {"queue": queue, "endpoint": {"url": url, "method": "POST", **endpoint}}
    opts = endpoint.pop("opts", None)
    if opts is not None:
        body["opts"] = opts
        del body["endpoint"]["opts"]
    status, text, headers = await proxy.request("POST", "/workers", json_body=body, headers=AUTH)
    assert (status, text) == (200, "OK"), text
    return headers


async def add_job(proxy, queue=QUEUE, **job):
    job = {"name": "test-job", "data": "test", **job}
    status, jobs, _ = await proxy.request("POST", f"/queues/{queue}/jobs", json_body=[job],
                                          headers=AUTH)
    assert status == 200, jobs
    return jobs[0]["id"]


async def job_state(proxy, job_id, queue=QUEUE):
    status, job, _ = await proxy.request("GET", f"/queues/{queue}/jobs/{job_id}", headers=AUTH)
    assert status == 200, job
    return job


async def finished(proxy, job_id, queue=QUEUE):
    async def check():
        job = await job_state(proxy, job_id, queue)
        return job if job["state"] in ("completed", "failed") else None

    await eventually(check, what=f"job {job_id} to finish")
    # GET reads the job and its state concurrently: read again once it is known final.
    return await job_state(proxy, job_id, queue)
