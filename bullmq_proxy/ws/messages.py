"""The frames of the WebSocket API: ``{"id": n, "data": {...}}`` in both directions.

Parsing never raises anything but ``FrameError``, which carries the id when it could be
read, so that every malformed frame gets an err reply instead of killing the socket.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import attrs

from bullmq_proxy.encoding import encode_json
from bullmq_proxy.errors import INVALID_JSON, ProxyError, invalid
from bullmq_proxy.validation import is_integer, parse_json

MessageId = int | str | None
LEADING_ID = re.compile(rb'\s*\{\s*"id"\s*:\s*(-?[0-9]{1,18})\s*,')


@attrs.frozen
class Message:
    """One decoded frame: its id (echoed in the reply) and its ``data`` object."""

    id: MessageId
    data: dict[str, Any]


@attrs.frozen
class Call:
    """A command frame ``{"fn": ..., "args": [...]}``."""

    id: MessageId
    fn: str
    args: list[Any]


class FrameError(Exception):
    """A frame that cannot be served; ``id`` is the frame's id when it had a readable one."""

    def __init__(self, message_id: MessageId, error: ProxyError) -> None:
        super().__init__(error.detail)
        self.id = message_id
        self.error = error


def decode(payload: bytes) -> Message:
    try:
        frame = parse_json(payload)
    except ProxyError as err:
        raise FrameError(None, ProxyError(INVALID_JSON, err.detail.replace(
            "request body", "message"), "message")) from None
    if not isinstance(frame, dict):
        raise FrameError(None, invalid("message", 'a message must be {"id": ..., "data": {...}}'))
    message_id = frame.get("id")
    if not (message_id is None or is_integer(message_id) or isinstance(message_id, str)):
        raise FrameError(None, invalid("id", "id must be an integer or a string"))
    data = frame.get("data")
    if not isinstance(data, dict):
        raise FrameError(message_id, invalid("data", "data must be a JSON object"))
    return Message(message_id, data)


def salvage_id(payload: bytes) -> MessageId:
    """The id of a frame that ``decode`` refused (a lone surrogate, a number that overflows,
    nesting too deep), read leniently, so that the reply it was meant to be can still be
    matched; None when even that fails."""
    try:
        frame = json.loads(payload.decode("utf-8", "surrogatepass"))
    except RecursionError:
        # Too deep even for that: an integer id written first, as clients write it.
        leading = LEADING_ID.match(payload[:64])
        return int(leading[1]) if leading else None
    except ValueError:
        return None
    message_id = frame.get("id") if isinstance(frame, dict) else None
    return message_id if is_integer(message_id) or isinstance(message_id, str) else None


def as_call(message: Message) -> Call:
    fn = message.data.get("fn")
    if not isinstance(fn, str) or not fn:
        raise FrameError(message.id, invalid("fn", "fn must name a command"))
    args = message.data.get("args", [])
    if not isinstance(args, list):
        raise FrameError(message.id, invalid("args", "args must be a JSON array"))
    return Call(message.id, fn, args)


def read_call(payload: bytes, send: Callable[[bytes], None]) -> Call | None:
    """The call a frame holds; a malformed frame is answered with its err reply instead."""
    try:
        return as_call(decode(payload))
    except FrameError as error:
        send(err(error.id, error.error))
        return None


def encode(message_id: MessageId, data: Any) -> bytes:
    return encode_json({"id": message_id, "data": data})


def ok(message_id: MessageId, result: Any) -> bytes:
    return encode(message_id, {"ok": result})


def err(message_id: MessageId, error: ProxyError) -> bytes:
    return encode(message_id, {"err": error.ws_error()})
