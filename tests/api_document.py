"""Writes the OpenAPI document of the proxy's REST API, as served at GET /openapi.json.

    .venv/bin/python -m tests.api_document > docs/openapi.json

test_openapi.py fails when docs/openapi.json differs from what the code serves.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from twisted.application.service import MultiService
from twisted.internet import reactor

from bullmq_proxy.http.openapi import api_document
from bullmq_proxy.service import build_context
from tests.support import make_config


def served_document() -> dict[str, Any]:
    """The document of a proxy assembled (not started) with the default settings."""
    context = build_context(make_config(), reactor, MultiService())
    return api_document(context.router.routes)


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render(served_document()))
