"""Every answer the test suite gets from the REST API, checked against the OpenAPI document.

``Proxy.request`` (tests/support.py) passes each answer here: the route must be in the
document, the status must be one the document lists for it, and the body must have the
declared shape. So the document is held to what the suite sees, not only to itself.
"""

from __future__ import annotations

import re
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from bullmq_proxy.http.openapi import api_document

URN = "urn:bullmq-proxy:api"


def _pointer(*parts: str) -> str:
    return "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


class ApiContract:
    def __init__(self, routes: Any) -> None:
        self.document = api_document(routes)
        self._registry = Registry().with_resource(
            URN, Resource.from_contents(self.document, default_specification=DRAFT202012))
        self._paths = [
            (re.compile("^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(path)) + "$"), path)
            for path in self.document["paths"]]

    def _template(self, path: str, method: str) -> str | None:
        """The documented path of ``path``: the one with this method, literal segments
        winning over parameters (``/jobs/next`` before ``/jobs/{jobId}``), as the router
        matches."""
        matching = sorted((template for pattern, template in self._paths
                           if pattern.match(path)), key=lambda t: t.count("{"))
        for template in matching:
            if method.lower() in self.document["paths"][template]:
                return template
        return matching[0] if matching else None

    def _validate(self, pointer: str, body: Any, what: str) -> None:
        validator = Draft202012Validator({"$ref": f"{URN}#/{pointer}"},
                                         registry=self._registry)
        errors = sorted(validator.iter_errors(body), key=lambda e: e.path)
        assert not errors, f"{what}: {errors[0].message} at {list(errors[0].path)}"

    def check(self, method: str, raw_path: str, status: int, content_type: str,
              body: Any) -> None:
        path = raw_path.split("?", 1)[0]
        if method == "OPTIONS":
            # The router answers OPTIONS (CORS preflights) for every route it serves.
            assert status in (204, 404), f"OPTIONS {path} answered {status}"
            return
        template = self._template(path, method)
        operation = (self.document["paths"].get(template, {}).get(method.lower())
                     if template else None)
        what = f"{method} {path} answered {status}"
        if operation is None:
            # Outside the document only the router's own answers: no such route, or no
            # such method (or 401 first, for a caller without a token); and the HTTP
            # channel's refusal of a method HTTP/1.1's parser does not know (BREW).
            refused = status == 400 and isinstance(body, dict) \
                and body.get("type") == "/problems/invalid-http"
            assert status in (401, 404, 405) or refused, \
                f"{what}, which the API document does not list"
            self._validate(_pointer("components", "schemas", "Problem"), body, what)
            return
        if method == "HEAD":
            return
        response = operation["responses"].get(str(status))
        assert response is not None, (
            f"{what}; the document lists {sorted(operation['responses'])} for it")
        for media in (response.get("content") or {}):
            if media.split(";")[0] == content_type.split(";")[0].strip():
                self._validate(_pointer("paths", template, method.lower(), "responses",
                                        str(status), "content", media, "schema"), body, what)
                return
        assert not response.get("content"), (
            f"{what} as {content_type!r}; the document says {sorted(response['content'])}")
