"""The AsyncAPI document of the WebSocket API: current, and listing every command."""

from __future__ import annotations

from pathlib import Path

from bullmq_proxy.ws.admin import ADMIN_COMMANDS
from bullmq_proxy.ws.asyncapi import asyncapi_document, render
from bullmq_proxy.ws.commands import COMMANDS

DOCUMENTED = Path(__file__).parent.parent / "docs" / "asyncapi.json"


def test_docs_asyncapi_json_is_what_the_code_builds():
    assert DOCUMENTED.read_text() == render(), (
        "docs/asyncapi.json is stale: .venv/bin/python -m bullmq_proxy.ws.asyncapi "
        "> docs/asyncapi.json")


def test_every_command_is_listed_with_its_right():
    document = asyncapi_document()
    commands = document["components"]["messages"]["command"]["payload"]["oneOf"]
    listed = {c["title"]: c["description"] for c in commands}
    assert set(listed) == {*COMMANDS, *ADMIN_COMMANDS}
    assert "'write' right" in listed["add"]
    assert "'manage' right" in listed["obliterate"]


def test_every_reference_resolves():
    document = asyncapi_document()

    def refs(node):
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in refs(document):
        target = document
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
    assert document["asyncapi"] == "3.0.0"
    assert set(document["channels"]) == {"queue", "worker", "events"}
