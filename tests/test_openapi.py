"""The API document: valid OpenAPI 3.1, describing exactly the routes the router serves, and
the same as docs/openapi.json. (Every answer the suite gets is checked against it too: see
tests/api_contract.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest_twisted
from openapi_spec_validator import validate

from tests.api_document import render, served_document
from tests.support import AUTH

DOCUMENTED = Path(__file__).parent.parent / "docs" / "openapi.json"


def test_the_document_is_valid_openapi_3_1():
    validate(served_document())


@pytest_twisted.ensureDeferred
async def test_every_route_is_documented_with_its_answer(proxy):
    routes = proxy.context.router.routes
    paths = served_document()["paths"]
    served = {(route.template, route.method.decode().lower()) for route in routes}
    documented = {(path, method) for path, operations in paths.items() for method in operations}
    assert served == documented
    for route in routes:
        assert route.response is not None or route.status == 204, route.template


def test_docs_openapi_json_is_what_the_code_serves():
    assert DOCUMENTED.read_text() == render(served_document()), (
        "docs/openapi.json is stale: .venv/bin/python -m tests.api_document > docs/openapi.json")


@pytest_twisted.ensureDeferred
async def test_the_document_is_served_to_a_token_holder_and_rendered_offline(proxy):
    status, document, _ = await proxy.request("GET", "/openapi.json", headers=AUTH)
    assert status == 200
    assert document == served_document()
    assert (await proxy.request("GET", "/openapi.json"))[0] == 401
    status, page, headers = await proxy.request("GET", "/docs")
    assert status == 200
    assert headers.getRawHeaders("content-type") == ["text/html; charset=utf-8"]
    assert "openapi.json" in page
    # Rendered offline: nothing is loaded from another site.
    for attribute in ("src=", "href="):
        assert attribute not in page
