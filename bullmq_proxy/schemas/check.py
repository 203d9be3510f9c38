"""Check a decoded JSON value against a declared shape, naming the offending field.

Shapes are plain JSON Schema (draft 2020-12) dictionaries, so the same declaration serves
the validators here and the OpenAPI document. Only the keywords the proxy's shapes use are
understood; ``check`` refuses a shape with any other keyword (or ``format``), so a shape can
never say more than what is enforced. Every refusal is a ``ProxyError`` (invalid-field or
unknown-field) whose ``field`` is the path of the value (``opts.priority``, ``[2].name``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from bullmq_proxy.errors import ProxyError, invalid, unknown

Schema = Mapping[str, Any]

KEYWORDS = frozenset({
    "type", "enum", "const", "minimum", "maximum", "minLength", "maxLength", "pattern",
    "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
    "anyOf", "not", "default", "description", "title", "examples", "format",
})
_TYPE_NAMES = {
    "object": "a JSON object", "array": "a JSON array", "string": "a string",
    "integer": "an integer", "number": "a number", "boolean": "a boolean", "null": "null",
}


def _is_date_time(text: str) -> bool:
    """RFC 3339's date-time (JSON Schema's ``date-time``) as ISO 8601 reads it: a date and a
    time with an offset; without one the instant would depend on the proxy's time zone."""
    try:
        return datetime.fromisoformat(text).tzinfo is not None
    except ValueError:
        return False


# Each format the shapes use: its check, and what a value must be.
FORMATS: Mapping[str, tuple[Callable[[str], bool], str]] = {
    "date-time": (_is_date_time, "an ISO 8601 date-time with an offset, e.g. "
                                 "2030-01-01T08:00:00Z"),
}


def _is(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return (isinstance(value, int | float) and not isinstance(value, bool)
                and math.isfinite(value))
    return {
        "object": isinstance(value, dict), "array": isinstance(value, list),
        "string": isinstance(value, str), "boolean": isinstance(value, bool),
        "null": value is None,
    }[kind]


def _describe(schema: Schema) -> str:
    """What a value of ``schema`` must be, as the end of a sentence."""
    if "const" in schema:
        return f"{schema['const']!r}"
    if "enum" in schema:
        return "one of " + ", ".join(str(choice) for choice in schema["enum"])
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds or [])
    text = " or ".join(_TYPE_NAMES[kind] for kind in kinds) or "a JSON value"
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        text += f" between {low} and {high}"
    elif low is not None:
        text += f" >= {low}"
    elif high is not None:
        text += f" <= {high}"
    if "minLength" in schema or "maxLength" in schema:
        text += (f" of {schema.get('minLength', 0)} to {schema['maxLength']} characters"
                 if "maxLength" in schema else f" of at least {schema['minLength']} characters")
    return text


def _join(field: str, key: str) -> str:
    return f"{field}.{key}" if field else key


def check(schema: Schema, value: Any, field: str) -> Any:
    """``value`` if it has the declared shape, with object defaults filled in."""
    if not KEYWORDS.issuperset(schema):
        raise ValueError(f"the shape of {field or 'the body'} uses "
                         f"{sorted(set(schema) - KEYWORDS)}")
    if "format" in schema and schema["format"] not in FORMATS:
        raise ValueError(f"the shape of {field or 'the body'} uses format {schema['format']!r}")
    name = field or "the body"
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_is(value, kind) for kind in kinds):
            raise invalid(field or "body", f"{name} must be {_describe(schema)}")
    if "const" in schema and value != schema["const"]:
        raise invalid(field or "body", f"{name} must be {_describe(schema)}")
    if "enum" in schema and value not in schema["enum"]:
        raise invalid(field or "body", f"{name} must be {_describe(schema)}")
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if numeric and (("minimum" in schema and value < schema["minimum"])
                    or ("maximum" in schema and value > schema["maximum"])):
        raise invalid(field or "body", f"{name} must be {_describe(schema)}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get(
                "maxLength", math.inf):
            raise invalid(field or "body", f"{name} must be {_describe(schema)}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise invalid(field or "body", schema.get("description")
                          or f"{name} does not have the expected form")
        if "format" in schema:
            valid, expected = FORMATS[schema["format"]]
            if not valid(value):
                raise invalid(field or "body", f"{name} must be {expected}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            raise invalid(field or "body", f"{name} must hold at least "
                                           f"{schema['minItems']} items")
        if len(value) > schema.get("maxItems", math.inf):
            raise invalid(field or "body", f"{name} must hold at most "
                                           f"{schema['maxItems']} items")
        if "items" in schema:
            value = [check(schema["items"], item, f"{field}[{index}]")
                     for index, item in enumerate(value)]
    if isinstance(value, dict) and ("properties" in schema or "required" in schema
                                    or "additionalProperties" in schema):
        value = _check_object(schema, value, field)
    # Combinations last: a value of the wrong type, or with an unknown or malformed member,
    # is told so by name rather than that it matches none of the combined shapes.
    if "anyOf" in schema:
        for option in schema["anyOf"]:
            try:
                value = check(option, value, field)
                break
            except ProxyError:
                continue
        else:
            raise invalid(field or "body", schema.get("description")
                          or f"{name} has none of the accepted shapes")
    if "not" in schema:
        try:
            check(schema["not"], value, field)
        except ProxyError:
            pass
        else:
            raise invalid(field or "body", schema.get("description")
                          or f"{name} has a refused shape")
    return value


def _check_object(schema: Schema, value: dict[str, Any], field: str) -> dict[str, Any]:
    properties: Mapping[str, Schema] = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    checked: dict[str, Any] = {}
    for key, item in value.items():
        if key in properties:
            checked[key] = check(properties[key], item, _join(field, key))
        elif extra is False:
            raise unknown(_join(field, key))
        elif isinstance(extra, Mapping):
            checked[key] = check(extra, item, _join(field, key))
        else:
            checked[key] = item
    for key in schema.get("required", ()):
        if key not in checked:
            raise invalid(_join(field, key), f"{_join(field, key)} is required")
    for key, declared in properties.items():
        if key not in checked and "default" in declared:
            checked[key] = declared["default"]
    return checked


def check_query(schema: Schema, query: Mapping[str, str]) -> dict[str, Any]:
    """The query parameters ``schema`` declares (an object shape), converted from text to
    their declared types and checked; parameters it does not declare are ignored."""
    converted: dict[str, Any] = {}
    for key, declared in schema.get("properties", {}).items():
        raw = query.get(key)
        if raw is None or raw == "":
            continue
        kinds = declared.get("type")
        if kinds == "integer":
            try:
                converted[key] = int(raw, 10)
            except ValueError:
                raise invalid(key, f"{key} must be an integer, got {raw!r}") from None
        elif kinds == "boolean":
            if raw not in ("true", "false"):
                raise invalid(key, f"{key} must be true or false, got {raw!r}")
            converted[key] = raw == "true"
        else:
            converted[key] = raw
    _, opened, plain = _open(schema)
    if plain and not converted:
        # Most requests have no query: only the required parameters and defaults apply.
        return _check_object(opened, converted, "")
    return check(opened, converted, "")


# Query shapes are the routes' own, few and kept for the process's life: each with its copy
# that lets undeclared parameters through, made once (and the original held, so that its id
# stays its own), and whether it is a plain object shape, without combinations.
_opened: dict[int, tuple[Schema, Schema, bool]] = {}


def _open(schema: Schema) -> tuple[Schema, Schema, bool]:
    held = _opened.get(id(schema))
    if held is None or held[0] is not schema:
        opened = {**schema, "additionalProperties": True}
        plain = schema.get("type") == "object" and not {"anyOf", "not"} & schema.keys() \
            and KEYWORDS.issuperset(schema)
        held = _opened[id(schema)] = (schema, opened, plain)
    return held
