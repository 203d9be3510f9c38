"""The REST router: one Twisted Web resource that matches route templates, authorizes,
runs the handler coroutine and writes the JSON (or problem) response.

Every response of the REST API leaves through ``Router._write`` or ``write_problem``; there
is no other error page.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import unquote_to_bytes

import attrs
import redis.exceptions
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from bullmq_proxy.auth import Gate, Policy
from bullmq_proxy.bridge import as_deferred
from bullmq_proxy.config import Config
from bullmq_proxy.encoding import encode_json
from bullmq_proxy.errors import (
    INTERNAL,
    INVALID_FIELD,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    PAYLOAD_TOO_LARGE,
    REDIS_UNAVAILABLE,
    TIMEOUT,
    ProxyError,
)
from bullmq_proxy.validation import parse_json, validate_queue_name

log = Logger(namespace="bullmq_proxy.http")

JSON_TYPE = b"application/json; charset=utf-8"
PROBLEM_TYPE = b"application/problem+json"
TEXT_TYPE = b"text/plain; charset=utf-8"


@attrs.frozen
class Reply:
    """A response other than a plain 200 JSON document."""

    status: int = 200
    body: Any = None
    text: str | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class Call:
    """What a handler gets: the matched parameters, the query and the body."""

    request: IRequest
    params: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return parse_json(self.body)


Handler = Callable[[Call], Awaitable[Any]]
RequestObserver = Callable[[str | None, bytes, int, float], None]
"""Told (route template or None, method, status, seconds) once per answered request."""


@attrs.frozen
class Route:
    method: bytes
    template: str
    handler: Handler
    policy: Policy = Policy.TOKEN

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(self.template.strip("/").split("/")) if self.template != "/" else ()


def split_path(raw_path: bytes) -> tuple[str, ...]:
    """Path segments, each percent-decoded exactly once (``%2F`` stays inside its segment)."""
    parts = raw_path.split(b"?", 1)[0].split(b"/")
    segments = parts[1:]
    if segments and segments[-1] == b"":
        segments.pop()
    try:
        return tuple(unquote_to_bytes(part).decode("utf-8") for part in segments)
    except UnicodeDecodeError:
        raise ProxyError(INVALID_FIELD, "The path is not valid UTF-8 once decoded.", "path") \
            from None


def _match(template: Sequence[str], segments: Sequence[str]) -> dict[str, str] | None:
    if len(template) != len(segments):
        return None
    params: dict[str, str] = {}
    for pattern, segment in zip(template, segments, strict=True):
        if pattern.startswith("{"):
            if not segment:
                return None
            params[pattern[1:-1]] = segment
        elif pattern != segment:
            return None
    return params


def write_problem(request: IRequest, error: ProxyError, instance: str | None = None) -> None:
    request.setResponseCode(error.kind.status)
    for name, value in error.headers.items():
        request.setHeader(name, value)
    request.setHeader(b"content-type", PROBLEM_TYPE)
    instance = instance or request.path.decode("utf-8", "replace")
    body = json.dumps(error.problem(instance)).encode("utf-8")
    # A known length lets either channel send the whole answer in one write, unchunked.
    request.setHeader(b"content-length", b"%d" % len(body))
    request.write(body)
    request.finish()


def classify(err: BaseException) -> ProxyError | None:
    """Map an infrastructure failure to its error kind; None for a bug."""
    if isinstance(err, ProxyError):
        return err
    if isinstance(err, asyncio.TimeoutError | redis.exceptions.TimeoutError):
        return ProxyError(TIMEOUT, "Redis did not answer in time; try again later.")
    if isinstance(err, redis.exceptions.ConnectionError | ConnectionError):
        return ProxyError(
            REDIS_UNAVAILABLE,
            "Redis is unavailable; try again later.",
            headers={"Retry-After": "1"},
        )
    return None


class Router(Resource):
    """Dispatches every REST request to its route."""

    isLeaf = True

    def __init__(
        self, config: Config, gate: Gate, observe: RequestObserver | None = None
    ) -> None:
        super().__init__()
        self._config = config
        self._gate = gate
        self._observe = observe
        self._routes: list[tuple[Route, tuple[str, ...]]] = []

    def add_routes(self, routes: Sequence[Route]) -> None:
        self._routes.extend((route, route.segments) for route in routes)

    def render(self, request: IRequest) -> Any:
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        started = time.monotonic()
        done: Deferred[None] = as_deferred(self._respond(request, gone))
        done.addErrback(self._crashed, request, gone)
        done.addBoth(lambda _: self._log(request, started))
        return NOT_DONE_YET

    def find(self, request: IRequest) -> tuple[Route, dict[str, str]]:
        segments = split_path(request.uri)
        allowed: list[bytes] = []
        method = b"GET" if request.method == b"HEAD" else request.method
        for route, template in self._routes:
            params = _match(template, segments)
            if params is None:
                continue
            if route.method == method:
                return route, params
            allowed.append(route.method)
        if allowed:
            allow = ", ".join(m.decode() for m in dict.fromkeys(allowed))
            raise ProxyError(
                METHOD_NOT_ALLOWED,
                f"{request.method.decode()} is not allowed here; use {allow}.",
                headers={"Allow": allow},
            )
        raise ProxyError(NOT_FOUND, "There is no such route.")

    async def _respond(self, request: IRequest, gone: list[bool]) -> None:
        if gone:  # the client left before this task ran; its body is already closed
            return
        try:
            # asyncio.timeout, unlike wait_for, runs _run in this task: no task per request.
            async with asyncio.timeout(self._config.request_timeout):
                result = await self._run(request)
        except Exception as err:
            error = classify(err)
            if error is None:
                raise
            if not gone:
                write_problem(request, error)
            return
        if not gone:
            self._write(request, result)

    async def _run(self, request: IRequest) -> Any:
        route, params = self.find(request)
        request.route_template = route.template
        if "queueName" in params:
            validate_queue_name(params["queueName"], self._config)
        request.content.seek(0)
        body = request.content.read(self._config.max_body_size + 1)
        if getattr(request, "too_large", False) or len(body) > self._config.max_body_size:
            raise ProxyError(
                PAYLOAD_TOO_LARGE,
                f"The body is larger than {self._config.max_body_size} bytes.",
                headers={"Connection": "close"},
            )
        await self._gate.authorize(request, route.policy, params)
        query = {
            key.decode("utf-8", "replace"): values[0].decode("utf-8", "replace")
            for key, values in request.args.items()
            if values
        }
        return await route.handler(Call(request, params, query, body))

    def _write(self, request: IRequest, result: Any) -> None:
        reply = result if isinstance(result, Reply) else Reply(body=result)
        request.setResponseCode(reply.status)
        if reply.text is not None:
            request.setHeader(b"content-type", TEXT_TYPE)
            payload = reply.text.encode("utf-8")
        else:
            request.setHeader(b"content-type", JSON_TYPE)
            payload = encode_json(reply.body)
        # After the default content type, so that a reply may override it.
        for name, value in reply.headers.items():
            request.setHeader(name, value)
        request.setHeader(b"content-length", b"%d" % len(payload))
        if request.method != b"HEAD":
            request.write(payload)
        request.finish()

    def _crashed(self, failure: Failure, request: IRequest, gone: list[bool]) -> None:
        incident = uuid.uuid4().hex
        log.failure("Unexpected error {incident} on {path}", failure,
                    incident=incident, path=request.path.decode("utf-8", "replace"))
        if not gone:
            error = ProxyError(INTERNAL, f"An unexpected error occurred (incident {incident}).")
            write_problem(request, error, f"urn:uuid:{incident}")

    def _log(self, request: IRequest, started: float) -> None:
        if self._observe is not None:
            self._observe(getattr(request, "route_template", None), request.method,
                          request.code, time.monotonic() - started)
        if self._config.debug:
            log.debug(
                "{method} {path} {status} {ms:.1f}ms",
                method=request.method.decode(),
                path=request.path.decode("utf-8", "replace"),
                status=request.code,
                ms=(time.monotonic() - started) * 1000,
            )
