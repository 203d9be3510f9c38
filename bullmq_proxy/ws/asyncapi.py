"""The AsyncAPI 3.0 document of the WebSocket API, built from the command tables, so it
lists exactly the commands the queue socket runs, with the right each needs.

    .venv/bin/python -m bullmq_proxy.ws.asyncapi > docs/asyncapi.json
"""

from __future__ import annotations

import json
import sys
from typing import Any

from bullmq_proxy import __version__
from bullmq_proxy.bounds import CONCURRENCY
from bullmq_proxy.core.events import EVENT_NAMES
from bullmq_proxy.ws.admin import ADMIN_COMMANDS
from bullmq_proxy.ws.commands import COMMANDS

_ID = {"type": ["integer", "string"], "description": "echoed in the reply"}
_ERR = {
    "type": "object",
    "description": "the REST problem vocabulary: code is the problem type's slug",
    "properties": {"message": {"type": "string"}, "code": {"type": "string"},
                   "field": {"type": "string"}, "right": {"type": "string"},
                   "state": {"type": "string"}},
    "required": ["message", "code"],
}
_QUEUE = {"queueName": {"description": "percent-decoded once; the REST name rules"}}


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _commands() -> list[dict[str, Any]]:
    listed = [(name, command.arity, command.right.value) for name, command in COMMANDS.items()]
    listed += [(name, command.arity, command.right.value)
               for name, command in ADMIN_COMMANDS.items()]
    return [{
        "type": "object",
        "title": name,
        "description": f"needs the {right!r} right; see docs/websocket.md",
        "properties": {"id": _ID, "data": {
            "type": "object",
            "properties": {"fn": {"const": name},
                           "args": {"type": "array", "maxItems": arity}},
            "required": ["fn"]}},
        "required": ["id", "data"],
    } for name, arity, right in listed]


def asyncapi_document() -> dict[str, Any]:
    messages = {
        "command": {"summary": "A queue command, named as BullMQ's Queue method",
                    "payload": {"oneOf": _commands()}},
        "reply": {"summary": "A command's answer: ok, or err",
                  "payload": {"type": "object", "properties": {"id": _ID, "data": {
                      "type": "object",
                      "properties": {"ok": {"description": "the command's answer"},
                                     "err": _ERR}}}, "required": ["id", "data"]}},
        "job": {"summary": "A job for the push worker to run",
                "payload": {"type": "object", "properties": {"id": _ID, "data": {
                    "type": "object", "properties": {
                        "type": {"const": "process"}, "payload": {"description": "job.data"},
                        "job": {"type": "object", "description": "Job.asJSON()"},
                        "token": {"type": "string", "description": "the job's lock token"}}}},
                    "required": ["id", "data"]}},
        "result": {"summary": "The worker's answer to a job: result, or err",
                   "payload": {"type": "object", "properties": {"id": _ID, "data": {
                       "type": "object", "properties": {
                           "result": {"description": "the return value"},
                           "err": {"type": ["object", "string"],
                                   "description": "{message, stack} or a message"}}}},
                       "required": ["id", "data"]}},
        "subscription": {"summary": "on/off: which events the socket gets",
                         "payload": {"type": "object", "properties": {"id": _ID, "data": {
                             "type": "object", "properties": {
                                 "fn": {"enum": ["on", "off"]},
                                 "args": {"type": "array",
                                          "items": {"enum": list(EVENT_NAMES)}}}}}}},
        "event": {"summary": "A queue event, as BullMQ's QueueEvents emits it",
                  "payload": {"type": "object", "properties": {"id": {"const": 0}, "data": {
                      "type": "object", "properties": {
                          "event": {"enum": list(EVENT_NAMES)},
                          "args": {"type": "array",
                                   "description": "the event's fields, then its stream id"}}}}}},
    }
    channels = {
        "queue": {"address": "/ws/queues/{queueName}", "parameters": _QUEUE,
                  "description": "Queue operations (any right on the queue to connect; each "
                                 "command checks its own)",
                  "messages": {"command": _ref("messages", "command"),
                               "reply": _ref("messages", "reply")}},
        "worker": {"address": "/ws/queues/{queueName}/process/{concurrency}",
                   "parameters": {**_QUEUE, "concurrency": {"description": (
                       f"{CONCURRENCY.minimum} to {CONCURRENCY.maximum} jobs at once")}},
                   "description": "A push worker (the workers right)",
                   "messages": {"job": _ref("messages", "job"),
                                "result": _ref("messages", "result")}},
        "events": {"address": "/ws/queues/{queueName}/events", "parameters": _QUEUE,
                   "description": "Queue events (the read right); ?events= narrows them",
                   "messages": {"subscription": _ref("messages", "subscription"),
                                "event": _ref("messages", "event"),
                                "reply": _ref("messages", "reply")}},
    }

    def operation(action: str, channel: str, message: str,
                  reply: str | None = None) -> dict[str, Any]:
        found: dict[str, Any] = {
            "action": action, "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/{message}"}]}
        if reply is not None:
            found["reply"] = {"channel": {"$ref": f"#/channels/{channel}"},
                              "messages": [{"$ref": f"#/channels/{channel}/messages/{reply}"}]}
        return found

    return {
        "asyncapi": "3.0.0",
        "info": {"title": "BullMQ Proxy for Python: WebSocket API", "version": __version__,
                 "description": "Queue commands, push workers and queue events over "
                                "WebSockets; frames are JSON {id, data}."},
        "defaultContentType": "application/json",
        "servers": {"proxy": {"host": "localhost:8080", "protocol": "ws",
                              "security": [_ref("securitySchemes", "bearer")]}},
        "channels": channels,
        "operations": {
            "sendCommand": operation("receive", "queue", "command", "reply"),
            "deliverJob": operation("send", "worker", "job", "result"),
            "subscribe": operation("receive", "events", "subscription", "reply"),
            "sendEvent": operation("send", "events", "event"),
        },
        "components": {
            "messages": messages,
            "securitySchemes": {"bearer": {
                "type": "httpApiKey", "name": "Authorization", "in": "header",
                "description": "Bearer <token>; browsers send ?token= instead"}},
        },
    }


def render() -> str:
    return json.dumps(asyncapi_document(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
