"""Validation of jobs, job options, paging and queue names: every refusal names its field."""

from __future__ import annotations

import pytest

from bullmq_proxy.config import Config
from bullmq_proxy.errors import ProxyError
from bullmq_proxy.validation import (
    parse_json,
    validate_job_id,
    validate_jobs,
    validate_page,
    validate_queue_name,
    validate_states,
)


def refusal(call, *args):
    with pytest.raises(ProxyError) as caught:
        call(*args)
    return caught.value


@pytest.mark.parametrize("data", [0, False, "", None, [], {"a": 1}, 1.5, "text"])
def test_any_json_data_is_accepted(data):
    [job] = validate_jobs([{"name": "n", "data": data}])
    assert job.data == data


def test_accepted_options():
    opts = {
        "delay": 10, "lifo": True, "priority": 2_097_152, "attempts": 3, "backoff": 100,
        "jobId": "order-7", "deduplication": {"id": "d", "ttl": 5},
        "removeOnComplete": {"age": 60, "count": 10}, "removeOnFail": 5,
        "repeat": {"every": 1000, "limit": 3, "key": "k", "immediately": True},
    }
    [job] = validate_jobs([{"name": "n", "data": 1, "opts": opts}])
    assert job.opts == opts
    [job] = validate_jobs([{"name": "n", "data": 1,
                            "opts": {"backoff": {"type": "exponential", "delay": 5}}}])
    assert job.opts["backoff"] == {"type": "exponential", "delay": 5}


@pytest.mark.parametrize(
    ("body", "field", "kind"),
    [
        ({"name": "n", "data": 1}, "body", "invalid-field"),
        ([1], "[0]", "invalid-field"),
        ([{"data": 1}], "[0].name", "invalid-field"),
        ([{"name": "", "data": 1}], "[0].name", "invalid-field"),
        ([{"name": 5, "data": 1}], "[0].name", "invalid-field"),
        ([{"name": "n"}], "[0].data", "invalid-field"),
        ([{"name": "n", "data": 1, "extra": 1}], "[0].extra", "unknown-field"),
        ([{"name": "n", "data": 1, "opts": []}], "[0].opts", "invalid-field"),
        ([{"name": "n", "data": 1, "opts": {"repeatEvery": 1}}], "[0].opts.repeatEvery",
         "unknown-field"),
        ([{"name": "n", "data": 1, "opts": {"delay": -1}}], "[0].opts.delay", "invalid-field"),
        ([{"name": "n", "data": 1, "opts": {"delay": 1.5}}], "[0].opts.delay", "invalid-field"),
        ([{"name": "n", "data": 1, "opts": {"priority": 0}}], "[0].opts.priority",
         "invalid-field"),
        ([{"name": "n", "data": 1, "opts": {"priority": 2_097_153}}], "[0].opts.priority",
         "invalid-field"),
        ([{"name": "n", "data": 1, "opts": {"priority": True}}], "[0].opts.priority",
         "invalid-field"),
        ([{"name": "n", "data": 1, "opts": {"attempts": "3"}}], "[0].opts.attempts",
         "invalid-field"),
        ([{"name": "n", "data": 1, "opts": {"lifo": 1}}], "[0].opts.lifo", "invalid-field"),
        ([{"name": "n", "data": 1, "opts": {"jobId": 7}}], "[0].opts.jobId", "invalid-field"),
        ([{"name": "n", "data": 1, "opts": {"jobId": "7"}}], "[0].opts.jobId", "invalid-field"),
        ([{"name": "n", "data": 1, "opts": {"jobId": "a:b"}}], "[0].opts.jobId",
         "invalid-field"),
        ([{"name": "n", "data": 1, "opts": {"backoff": -5}}], "[0].opts.backoff",
         "invalid-field"),
        ([{"name": "n", "data": 1, "opts": {"backoff": {"delay": 5}}}], "[0].opts.backoff.type",
         "invalid-field"),
        ([{"name": "n", "data": 1, "opts": {"backoff": {"type": "custom"}}}],
         "[0].opts.backoff.type", "invalid-field"),
        ([{"name": "n", "data": 1, "opts": {"backoff": {"type": "fixed", "jitter": 1}}}],
         "[0].opts.backoff.jitter", "unknown-field"),
        ([{"name": "n", "data": 1, "opts": {"deduplication": {"ttl": 5}}}],
         "[0].opts.deduplication.id", "invalid-field"),
        ([{"name": "n", "data": 1, "opts": {"deduplication": {"id": "x", "ttl": 0}}}],
         "[0].opts.deduplication.ttl", "invalid-field"),
        ([{"name": "n", "data": 1, "opts": {"removeOnComplete": -1}}],
         "[0].opts.removeOnComplete", "invalid-field"),
        ([{"name": "n", "data": 1, "opts": {"removeOnFail": {"age": "old"}}}],
         "[0].opts.removeOnFail.age", "invalid-field"),
        ([{"name": "n", "data": 1, "opts": {"removeOnFail": {"size": 1}}}],
         "[0].opts.removeOnFail.size", "unknown-field"),
        ([{"name": "n", "data": 1, "opts": {"repeat": {}}}], "[0].opts.repeat.every",
         "invalid-field"),
        ([{"name": "n", "data": 1, "opts": {"repeat": {"every": 0}}}], "[0].opts.repeat.every",
         "invalid-field"),
        ([{"name": "n", "data": 1, "opts": {"repeat": {"every": 5, "limit": 0}}}],
         "[0].opts.repeat.limit", "invalid-field"),
        ([{"name": "n", "data": 1, "opts": {"repeat": {"every": 5, "immediately": "yes"}}}],
         "[0].opts.repeat.immediately", "invalid-field"),
        ([{"name": "n", "data": 1, "opts": {"repeat": {"every": 5, "cron": "* * * * *"}}}],
         "[0].opts.repeat.cron", "unknown-field"),
        ([{"name": "ok", "data": 1}, {"name": "n", "data": 1, "opts": {"delay": "soon"}}],
         "[1].opts.delay", "invalid-field"),
    ],
)
def test_refusals_name_the_field(body, field, kind):
    error = refusal(validate_jobs, body)
    assert error.field == field
    assert error.kind.slug == kind
    assert error.kind.status == 400


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [(b"", "empty"), (b"  ", "empty"), (b"[{", "not valid JSON"), (b"\xff\xfe", "UTF-8"),
     (b"[NaN]", "not valid JSON"), (b"Infinity", "not valid JSON")],
)
def test_parse_json_refuses_bad_bodies(raw, fragment):
    error = refusal(parse_json, raw)
    assert error.kind.slug == "invalid-json"
    assert fragment in error.detail


def test_page_defaults_and_bounds():
    assert (validate_page({}).start, validate_page({}).length) == (0, 10)
    page = validate_page({"start": "20", "length": "100"})
    assert (page.start, page.end) == (20, 119)
    assert refusal(validate_page, {"length": "101"}).field == "length"
    assert refusal(validate_page, {"length": "1.5"}).field == "length"
    assert refusal(validate_page, {"start": "-3"}).field == "start"


def test_states():
    assert validate_states(None) == ("waiting", "active", "completed", "failed")
    assert validate_states("delayed,prioritized,waiting-children,paused,delayed") == (
        "delayed", "prioritized", "waiting-children", "paused")
    assert refusal(validate_states, "done").field == "statuses"


def test_queue_names():
    config = Config(min_queue_name_length=3, max_queue_name_length=5)
    assert validate_queue_name("{ab}", config) == "{ab}"
    assert refusal(validate_queue_name, "ab", config).field == "queueName"
    assert refusal(validate_queue_name, "abcdef", config).field == "queueName"
    assert refusal(validate_queue_name, "a:b", config).field == "queueName"


def test_job_ids():
    assert validate_job_id("order-1", "jobId") == "order-1"
    for bad in ("", "12", "-3", "a:b", 5, None):
        assert refusal(validate_job_id, bad, "jobId").field == "jobId"
