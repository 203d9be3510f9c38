"""The shape checker: each keyword it enforces, the field it names, and the keywords it
refuses to pretend it enforces."""

from __future__ import annotations

import pytest

from bullmq_proxy.errors import INVALID_FIELD, UNKNOWN_FIELD, ProxyError
from bullmq_proxy.schemas import admin as shapes
from bullmq_proxy.schemas.check import check, check_query


def refused(schema, value, field=""):
    with pytest.raises(ProxyError) as caught:
        check(schema, value, field)
    return caught.value


@pytest.mark.parametrize(("schema", "value", "field"), [
    ({"type": "integer"}, 1.5, "n"),
    ({"type": "integer"}, True, "n"),
    ({"type": "number"}, float("inf"), "n"),
    ({"type": "string"}, 3, "n"),
    ({"type": "boolean"}, "true", "n"),
    ({"enum": ["a", "b"]}, "c", "n"),
    ({"const": 1}, 2, "n"),
    ({"type": "integer", "minimum": 1}, 0, "n"),
    ({"type": "integer", "maximum": 9}, 10, "n"),
    ({"type": "string", "minLength": 2}, "a", "n"),
    ({"type": "string", "maxLength": 2}, "abc", "n"),
    ({"type": "string", "pattern": "^x"}, "y", "n"),
    ({"type": "array", "minItems": 1}, [], "n"),
    ({"type": "array", "maxItems": 1}, [1, 2], "n"),
])
def test_each_keyword_refuses_and_names_the_field(schema, value, field):
    error = refused(schema, value, field)
    assert error.kind is INVALID_FIELD
    assert error.field == field


def test_nested_fields_are_named_by_path():
    schema = {"type": "object", "properties": {
        "items": {"type": "array", "items": {"type": "object", "properties": {
            "n": {"type": "integer"}}, "additionalProperties": False}}}}
    assert refused(schema, {"items": [{"n": 1}, {"n": "x"}]}).field == "items[1].n"
    unknown = refused(schema, {"items": [{"m": 1}]})
    assert (unknown.kind, unknown.field) == (UNKNOWN_FIELD, "items[0].m")


def test_required_defaults_and_any_of():
    assert check(shapes.CLEAN, {"type": "wait"}, "") == {"type": "wait", "grace": 0,
                                                          "limit": 1000}
    assert refused(shapes.CLEAN, {}).field == "type"
    assert refused(shapes.SCHEDULER, {"every": 5, "pattern": "* * * * *"}).field == "body"
    assert refused(shapes.SCHEDULER, {}).field == "body"
    assert check(shapes.SCHEDULER, {"pattern": "* * * * *"}, "") == {"pattern": "* * * * *"}


def test_a_shape_with_a_keyword_the_checker_does_not_enforce_is_a_bug():
    with pytest.raises(ValueError, match="multipleOf"):
        check({"type": "integer", "multipleOf": 2}, 4, "n")


def test_query_parameters_are_converted_then_checked():
    # Parameters the shape does not declare are ignored, as the API conventions say.
    assert check_query(shapes.PAGE_QUERY, {"start": "5", "other": "x"}) == {
        "start": 5, "length": 10}
    assert refused_query(shapes.PAGE_QUERY, {"start": "five"}).field == "start"
    assert refused_query(shapes.PAGE_QUERY, {"length": "101"}).field == "length"
    assert check_query(shapes.OBLITERATE_QUERY, {"force": "true"}) == {"force": True}
    assert refused_query(shapes.OBLITERATE_QUERY, {"force": "yes"}).field == "force"


def test_no_query_still_gets_defaults_and_required_parameters():
    assert check_query(shapes.PAGE_QUERY, {}) == {"start": 0, "length": 10}
    assert check_query(shapes.PAGE_QUERY, {}) is not check_query(shapes.PAGE_QUERY, {})
    required = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
    assert refused_query(required, {}).field == "q"
    # A shape with combinations is checked whole, query or not.
    either = {"type": "object", "properties": {"a": {"type": "string"}},
              "anyOf": [{"required": ["a"]}, {"required": ["b"]}]}
    assert refused_query(either, {}).field == "body"
    with pytest.raises(ValueError, match="multipleOf"):
        check_query({"type": "object", "multipleOf": 2}, {})


def refused_query(schema, query):
    with pytest.raises(ProxyError) as caught:
        check_query(schema, query)
    return caught.value
