"""The REST router: one Twisted Web resource that matches route templates, authorizes,
runs the handler coroutine and writes the JSON (or problem) response.

Every response of the REST API leaves through ``Router._write`` or ``write_problem``; there
is no other error page.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from bullmq_proxy.auth import Gate, Policy
from bullmq_proxy.config import Config
from bullmq_proxy.deadlines import SharedDeadline
from bullmq_proxy.encoding import encode_json
from bullmq_proxy.errors import (
    INTERNAL,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    PAYLOAD_TOO_LARGE,
    TIMEOUT,
    ProxyError,
    classify,
)
from bullmq_proxy.http.cors import Cors
from bullmq_proxy.http.gone import IGoneNotice
from bullmq_proxy.logs import Logger
from bullmq_proxy.rights import Principal, Right
from bullmq_proxy.schemas.check import Schema, check, check_query
from bullmq_proxy.validation import parse_json, validate_queue_name
from bullmq_proxy.web import split_path, write_problem

log = Logger(namespace="bullmq_proxy.http")

# How long past REQUEST_TIMEOUT a request whose work ignores the timeout's cancel is answered.
OVERDUE_GRACE_SECONDS = 1.0

JSON_TYPE = b"application/json; charset=utf-8"
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
    """What a handler gets: the matched parameters, the query and the body; for a route
    that declares its shapes, ``data`` (the checked body) and ``args`` (the checked query)."""

    request: IRequest
    params: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes
    data: Any = None
    args: Mapping[str, Any] = attrs.field(factory=dict)
    principal: Principal | None = None

    def json(self) -> Any:
        return parse_json(self.body)


@attrs.frozen
class Stream:
    """A response written over time (Server-Sent Events): ``serve`` writes to the request
    after the headers are sent and returns when the stream ends. It runs outside the
    request timeout, which bounds only what comes before."""

    content_type: bytes
    serve: Callable[[IRequest], Awaitable[None]]


Handler = Callable[[Call], Awaitable[Any]]
RequestObserver = Callable[[str | None, bytes, int, float], None]
"""Told (route template or None, method, status, seconds) once per answered request."""


@attrs.frozen
class Route:
    """One route: its handler, who may call it, and the shapes of what it takes and answers
    (JSON Schema; the router checks ``body`` and ``query``, the API document shows all)."""

    method: bytes
    template: str
    handler: Handler
    policy: Policy = Policy.TOKEN
    body: Schema | None = None
    query: Schema | None = None
    response: Schema | None = None
    summary: str = ""
    status: int = 200
    media: str = "application/json"
    # Problem statuses the route answers besides those its policy and shapes imply.
    statuses: tuple[int, ...] = ()
    # The right a token needs (on the path's queue, when it names one); by default read
    # for GET and manage for the other methods.
    right: Right | None = None

    @property
    def needs(self) -> Right | None:
        if self.policy is not Policy.TOKEN:
            return None
        if self.right is not None:
            return self.right
        return Right.READ if self.method == b"GET" else Right.MANAGE

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(self.template.strip("/").split("/")) if self.template != "/" else ()


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


class _Flight:
    """One request on its way through the router."""

    __slots__ = ("gone", "request", "started", "task", "timed_out")

    def __init__(self, request: IRequest, started: float) -> None:
        self.request = request
        self.started = started
        self.task: asyncio.Future[None]
        # The client left, or was answered without the work (the overdue 504): nothing the
        # work ends with is written.
        self.gone = False
        self.timed_out = False

    def leave(self, _: Failure) -> None:
        self.gone = True


class Router(Resource):
    """Dispatches every REST request to its route."""

    isLeaf = True

    def __init__(
        self, config: Config, gate: Gate, clock: IReactorTime,
        observe: RequestObserver | None = None,
    ) -> None:
        super().__init__()
        self._config = config
        self._gate = gate
        self._observe = observe
        self._cors = Cors(config.cors_origins)
        self._routes: list[tuple[Route, tuple[str, ...]]] = []
        # Every request has the same REQUEST_TIMEOUT, so one timer serves all of them
        # (deadlines.py): an asyncio timeout and an overdue timer per request were a
        # twentieth of an add's CPU.
        self._deadline = SharedDeadline(clock, config.request_timeout)
        self._grace = SharedDeadline(clock, OVERDUE_GRACE_SECONDS)

    def add_routes(self, routes: Sequence[Route]) -> None:
        self._routes.extend((route, route.segments) for route in routes)

    @property
    def routes(self) -> list[Route]:
        return [route for route, _ in self._routes]

    def render(self, request: IRequest) -> Any:
        self._cors.decorate(request)
        flight = _Flight(request, time.monotonic())
        if IGoneNotice.providedBy(request):
            request.on_gone(flight.leave)
        else:
            request.notifyFinish().addErrback(flight.leave)
        # The task writes its own answer, reports its own crash and logs. (A Deferred around
        # it cost a fifth of this method, for no caller; a done callback, a loop handle.)
        flight.task = asyncio.ensure_future(self._respond(flight))
        return NOT_DONE_YET

    async def _respond(self, flight: _Flight) -> None:
        try:
            await self._answer(flight)
        except BaseException as error:
            # A cancel that is not the timeout's is a crash too: nothing else answers.
            self._crashed(Failure(error, type(error), error.__traceback__), flight)
            if not isinstance(error, Exception | asyncio.CancelledError):
                raise
        finally:
            self._log(flight.request, flight.started)

    def _settle(self, flight: _Flight) -> None:
        """The work under the request is over: no timeout applies to it any more."""
        self._deadline.discard(flight)
        self._grace.discard(flight)

    def _expire(self, flight: _Flight) -> None:
        """REQUEST_TIMEOUT passed: cancel the work, and should something under it swallow
        the cancel, answer the 504 once the grace has passed too."""
        flight.timed_out = True
        flight.task.cancel()
        self._grace.add(flight, functools.partial(self._overdue, flight))

    def _methods(self, segments: Sequence[str]) -> list[bytes]:
        """The methods of the routes whose template matches the path."""
        return list(dict.fromkeys(route.method for route, template in self._routes
                                  if _match(template, segments) is not None))

    def find(self, request: IRequest) -> tuple[Route, dict[str, str]]:
        segments = split_path(request.uri)
        method = b"GET" if request.method == b"HEAD" else request.method
        for route, template in self._routes:
            params = _match(template, segments)
            if params is not None and route.method == method:
                return route, params
        allowed = self._methods(segments)
        if allowed:
            allow = ", ".join(m.decode() for m in allowed)
            raise ProxyError(
                METHOD_NOT_ALLOWED,
                f"{request.method.decode()} is not allowed here; use {allow}.",
                headers={"Allow": allow},
            )
        raise ProxyError(NOT_FOUND, "There is no such route.")

    async def _answer(self, flight: _Flight) -> None:
        request = flight.request
        if flight.gone:  # the client left before this task ran; its body is already closed
            return
        # Set here rather than in render, so that the cancel finds the task inside the try.
        self._deadline.add(flight, functools.partial(self._expire, flight))
        try:
            result = await self._run(request)
        except asyncio.CancelledError:
            if not flight.timed_out:
                raise
            # The timeout's own cancel, taken back so that the task ends as answered.
            flight.task.uncancel()
            error: ProxyError | None = classify(TimeoutError())
        except Exception as err:
            error = classify(err)
            if error is None:
                raise
        else:
            error = None
        finally:
            # What follows (the answer, or a stream) is outside the request timeout.
            self._settle(flight)
        if flight.gone:
            return
        if error is not None:
            write_problem(request, error)
            return
        if isinstance(result, Stream):
            request.setResponseCode(200)
            request.setHeader(b"content-type", result.content_type)
            request.setHeader(b"cache-control", b"no-store")
            await result.serve(request)
            if not flight.gone:
                request.finish()
            return
        self._write(request, result)

    def _options(self, request: IRequest) -> Reply:
        """OPTIONS, a CORS preflight included: the path's methods, no token needed."""
        methods = self._methods(split_path(request.uri))
        if not methods:
            raise ProxyError(NOT_FOUND, "There is no such route.")
        allow = ", ".join(m.decode() for m in [*methods, b"OPTIONS"])
        return Reply(status=204, text="", headers={
            "Allow": allow, **self._cors.preflight_headers(request, allow)})

    async def _run(self, request: IRequest) -> Any:
        if request.method == b"OPTIONS":
            return self._options(request)
        try:
            route, params = self.find(request)
        except ProxyError:
            # Only a token holder learns which routes and methods exist (those of a public
            # path are no secret).
            segments = split_path(request.uri)
            if not any(route.policy is Policy.PUBLIC for route, template in self._routes
                       if _match(template, segments) is not None):
                await self._gate.authorize(request, Policy.TOKEN, {})
            raise
        request.route_template = route.template
        # The token first, so that without one no answer tells about names or bodies.
        principal = await self._gate.authorize(request, route.policy, params,
                                               right=route.needs)
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
        query = {
            key.decode("utf-8", "replace"): values[0].decode("utf-8", "replace")
            for key, values in request.args.items()
            if values
        }
        data = self._checked_body(route.body, body) if route.body is not None else None
        args = check_query(route.query, query) if route.query is not None else {}
        return await route.handler(Call(request, params, query, body, data, args, principal))

    @staticmethod
    def _checked_body(schema: Schema, body: bytes) -> Any:
        # A body whose fields are all optional may be left out.
        if not body.strip() and schema.get("type") == "object" and not schema.get("required"):
            return check(schema, {}, "")
        return check(schema, parse_json(body), "")

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

    def _overdue(self, flight: _Flight) -> None:
        if flight.gone:
            return
        flight.gone = True  # whatever the work ends with later is not written
        request = flight.request
        log.warn("{method} {path} outlived REQUEST_TIMEOUT: the work under it ignored the "
                 "cancel; answered 504", method=request.method.decode(),
                 path=request.path.decode("utf-8", "replace"))
        write_problem(request, ProxyError(
            TIMEOUT, f"The request did not finish within {self._config.request_timeout} s; "
                     "try again later."))

    def _crashed(self, failure: Failure, flight: _Flight) -> None:
        incident = uuid.uuid4().hex
        request = flight.request
        log.failure("Unexpected error {incident} on {path}", failure,
                    incident=incident, path=request.path.decode("utf-8", "replace"))
        if not flight.gone:
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
