"""The OpenAPI 3.1 document of the REST API, built from the router's route table: each
route's template, policy and declared shapes (body, query, response). A route is described
exactly as it is served, so the document cannot drift from the code."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

from bullmq_proxy import __version__
from bullmq_proxy.auth import Policy
from bullmq_proxy.http.router import Call, Reply, Route
from bullmq_proxy.schemas.responses import COMPONENTS, ref

DOCS_PAGE = (resources.files("bullmq_proxy.http") / "docs.html").read_text("utf-8")
_PARAMETER = re.compile(r"\{(\w+)\}")
_PROBLEMS = {
    "400": "Bad input: the problem names the field",
    "401": "No token, or one that is not accepted",
    "403": "The token lacks the right (or the queue) the problem names",
    "404": "No such queue, job or scheduler",
    "409": "The job or queue is in a state the action does not apply to",
    "429": "Too many requests (Retry-After)",
    "413": "The body is larger than MAX_BODY_SIZE",
    "502": "The job failed (add and wait): the problem carries the job",
    "503": "Redis is unavailable (Retry-After)",
    "504": "Redis did not answer within REQUEST_TIMEOUT",
}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/problem+json": {"schema": ref("Problem")}}}


def _answer(route: Route) -> dict[str, Any]:
    if route.status == 204:
        return {"description": "Done; no content"}
    return {"description": "OK",
            "content": {route.media: {"schema": route.response or {}}}}


def _operation(route: Route) -> dict[str, Any]:
    method = route.method.decode().lower()
    names = _PARAMETER.findall(route.template)
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True,
         "schema": {"type": "string", "minLength": 1},
         "description": "percent-decoded once"} for name in names]
    for name, shape in ((route.query or {}).get("properties") or {}).items():
        parameters.append({"name": name, "in": "query", "required": False, "schema": shape})
    slug = "_".join(part.strip("{}") for part in route.template.strip("/").split("/"))
    operation: dict[str, Any] = {
        "operationId": f"{method}_{slug or 'root'}",
        "summary": route.summary or f"{route.method.decode()} {route.template}",
        "parameters": parameters,
        "responses": {str(route.status): _answer(route)},
    }
    if route.body is not None:
        required = bool(route.body.get("required")) or route.body.get("type") != "object"
        operation["requestBody"] = {"required": required, "content": {
            "application/json": {"schema": route.body}}}
    if route.policy is Policy.PUBLIC:
        operation["security"] = []
    elif route.policy is Policy.JOB_LOCK:
        operation["security"] = [{"lockToken": []}]
    problems = ["400", "503", "504"]
    if route.policy is not Policy.PUBLIC:
        problems.append("401")
    if route.policy is Policy.TOKEN:
        problems += ["403", "429"]
    if names:
        problems += ["404", "409"]
    if route.body is not None or route.method in (b"POST", b"PUT", b"PATCH"):
        problems.append("413")
    for status in route.statuses:
        if status == 204:
            operation["responses"][str(status)] = {"description": "Nothing to answer"}
        elif status < 400:
            operation["responses"][str(status)] = _answer(route)
        else:
            problems.append(str(status))
    for status in sorted(set(problems)):
        operation["responses"][status] = _problem(_PROBLEMS[status])
    return operation


def api_document(routes: Sequence[Route]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.template, {})[route.method.decode().lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "BullMQ Proxy for Python",
            "version": __version__,
            "description": "BullMQ queues over HTTP: add, inspect, manage and process jobs "
                           "without a Redis connection. Errors are RFC 9457 problems.",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": COMPONENTS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "one of AUTH_TOKENS"},
                "lockToken": {"type": "http", "scheme": "bearer",
                              "description": "the lock token the job was delivered with"},
            },
        },
    }


def api_routes(routes: Callable[[], Sequence[Route]]) -> list[Route]:
    """``GET /openapi.json`` (the document of every route ``routes()`` returns, itself
    included) and ``GET /docs`` (a page that renders it, with no script from elsewhere)."""
    built: list[dict[str, Any]] = []

    async def document(call: Call) -> Any:
        if not built:
            built.append(api_document(routes()))
        return built[0]

    async def page(call: Call) -> Any:
        return Reply(text=DOCS_PAGE, headers={"Content-Type": "text/html; charset=utf-8"})

    return [
        Route(b"GET", "/openapi.json", document, response={"type": "object"},
              summary="This API's OpenAPI 3.1 document"),
        Route(b"GET", "/docs", page, Policy.PUBLIC, response={"type": "string"},
              media="text/html",
              summary="A page that renders the API document (asks for a token)"),
    ]
