"""Validation of worker registrations: everything BullMQ or the original would refuse."""

from __future__ import annotations

import json

import pytest

from bullmq_proxy.errors import ProxyError
from bullmq_proxy.workers.metadata import DEFAULT_TIMEOUT_MS, load_metadata, parse_metadata
from tests.support import make_config

CONFIG = make_config()
URL = "http://127.0.0.1:9/hook"


def body(**changes):
    value = {"queue": "mail", "endpoint": {"url": URL, "method": "POST"}}
    value.update(changes)
    return value


def refused(value) -> ProxyError:
    with pytest.raises(ProxyError) as caught:
        parse_metadata(value, CONFIG)
    assert caught.value.kind.status == 400
    return caught.value


def test_minimal_registration_gets_defaults_and_keeps_the_body_as_stored():
    metadata = parse_metadata(body(), CONFIG)
    assert metadata.queue == "mail"
    assert metadata.endpoint.method == "POST"
    assert metadata.endpoint.timeout_ms == DEFAULT_TIMEOUT_MS
    assert metadata.endpoint.headers == {}
    assert metadata.opts == {}
    assert json.loads(metadata.raw) == body()


def test_full_registration_is_accepted():
    value = body(
        endpoint={"url": "https://example.test:8443/x?y=1", "method": "patch",
                  "headers": {"Authorization": "Bearer s3cret", "X-A": ""}, "timeout": 10},
        opts={"concurrency": 4, "removeOnComplete": {"count": 10, "age": 60},
              "removeOnFail": True, "limiter": {"max": 10, "duration": 1000},
              "maxStalledCount": 0},
    )
    metadata = parse_metadata(value, CONFIG)
    assert metadata.endpoint.method == "PATCH"
    assert metadata.endpoint.timeout_ms == 10
    assert metadata.opts["concurrency"] == 4
    assert json.loads(metadata.raw) == value


def test_sha_changes_with_the_stored_json_only():
    assert parse_metadata(body(), CONFIG).sha == parse_metadata(body(), CONFIG).sha
    assert parse_metadata(body(), CONFIG).sha != parse_metadata(
        body(opts={"concurrency": 2}), CONFIG).sha


def test_stored_json_from_the_original_is_read_verbatim():
    raw = '{"queue": "mail", "endpoint": {"url": "http://a.test/", "method": "POST"}}'
    metadata = load_metadata(raw, CONFIG)
    assert metadata.raw == raw
    with pytest.raises(ProxyError) as caught:
        load_metadata("{not json", CONFIG)
    assert caught.value.kind.slug == "invalid-json"


@pytest.mark.parametrize(("value", "field"), [
    ([], "body"),
    ("x", "body"),
    (body(extra=1), "extra"),
    ({"endpoint": {"url": URL, "method": "POST"}}, "queue"),
    (body(queue=""), "queue"),
    (body(queue=5), "queue"),
    (body(queue="ab"), "queue"),
    (body(queue="a:b:c"), "queue"),
    (body(queue="q" * 101), "queue"),
    ({"queue": "mail"}, "endpoint"),
    (body(endpoint="http://x"), "endpoint"),
    (body(endpoint={"method": "POST"}), "endpoint.url"),
    (body(endpoint={"url": "ftp://x.test/", "method": "POST"}), "endpoint.url"),
    (body(endpoint={"url": "not a url", "method": "POST"}), "endpoint.url"),
    (body(endpoint={"url": "http://x.test:99999/", "method": "POST"}), "endpoint.url"),
    (body(endpoint={"url": "http:///path", "method": "POST"}), "endpoint.url"),
    (body(endpoint={"url": URL}), "endpoint.method"),
    (body(endpoint={"url": URL, "method": "GET"}), "endpoint.method"),
    (body(endpoint={"url": URL, "method": 1}), "endpoint.method"),
    (body(endpoint={"url": URL, "method": "POST", "retries": 1}), "endpoint.retries"),
    (body(endpoint={"url": URL, "method": "POST", "timeout": 0}), "endpoint.timeout"),
    (body(endpoint={"url": URL, "method": "POST", "timeout": 1.5}), "endpoint.timeout"),
    (body(endpoint={"url": URL, "method": "POST", "timeout": "100"}), "endpoint.timeout"),
    (body(endpoint={"url": URL, "method": "POST", "timeout": True}), "endpoint.timeout"),
    (body(endpoint={"url": URL, "method": "POST", "asyncTimeout": 0}), "endpoint.asyncTimeout"),
    (body(endpoint={"url": URL, "method": "POST", "signingSecret": "short"}),
     "endpoint.signingSecret"),
    (body(endpoint={"url": URL, "method": "POST", "headers": []}), "endpoint.headers"),
    (body(endpoint={"url": URL, "method": "POST", "headers": {"X": 1}}), "endpoint.headers.X"),
    (body(endpoint={"url": URL, "method": "POST", "headers": {"X": "a\r\nB: c"}}),
     "endpoint.headers.X"),
    (body(endpoint={"url": URL, "method": "POST", "headers": {"Bad Name": "a"}}),
     "endpoint.headers.Bad Name"),
    (body(endpoint={"url": URL, "method": "POST", "headers": {"X(y)": "a"}}),
     "endpoint.headers.X(y)"),
    (body(endpoint={"url": URL, "method": "POST", "headers": {"X-Ä": "a"}}),
     "endpoint.headers.X-Ä"),
    (body(endpoint={"url": URL, "method": "POST", "headers": {"X-Key": "a", "x-key": "b"}}),
     "endpoint.headers.x-key"),
    (body(endpoint={"url": URL, "method": "POST", "headers": {"Content-Length": "1"}}),
     "endpoint.headers.Content-Length"),
    (body(opts=[]), "opts"),
    (body(opts={"lockDuration": 5}), "opts.lockDuration"),
    (body(opts={"concurrency": 0}), "opts.concurrency"),
    (body(opts={"concurrency": "2"}), "opts.concurrency"),
    (body(opts={"maxStalledCount": -1}), "opts.maxStalledCount"),
    (body(opts={"limiter": {"max": 1}}), "opts.limiter.duration"),
    (body(opts={"limiter": {"max": 0, "duration": 10}}), "opts.limiter.max"),
    (body(opts={"limiter": {"max": 1, "duration": 10, "groupKey": "x"}}),
     "opts.limiter.groupKey"),
    (body(opts={"removeOnComplete": {"count": -1}}), "opts.removeOnComplete.count"),
    (body(opts={"removeOnFail": {"ttl": 1}}), "opts.removeOnFail.ttl"),
    (body(opts={"removeOnFail": "yes"}), "opts.removeOnFail"),
])
def test_refused_registrations_name_the_field(value, field):
    assert refused(value).field == field
