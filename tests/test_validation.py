"""Validation of jobs, job options, paging and queue names: every refusal names its field."""

from __future__ import annotations

from pathlib import Path

import pytest

from bullmq_proxy import bounds
from bullmq_proxy.bounds import MAX_JSON_DEPTH
from bullmq_proxy.config import Config
from bullmq_proxy.errors import ProxyError
from bullmq_proxy.validation import (
    BOOLEAN_OPTIONS,
    INTEGER_OPTIONS,
    REFUSED_JOB_OPTIONS,
    REFUSED_REPEAT_OPTIONS,
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
        ([{"name": "n", "data": 1, "opts": {"backoff": {"type": "fixed", "jitter": 2}}}],
         "[0].opts.backoff.jitter", "invalid-field"),
        ([{"name": "n", "data": 1, "opts": {"backoff": {"type": "fixed", "factor": 1}}}],
         "[0].opts.backoff.factor", "unknown-field"),
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


# Hostile input: every number has its documented range, every string is real text.


def test_json_nested_past_the_limit_is_invalid_json():
    assert parse_json(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH) is not None
    for depth in (MAX_JSON_DEPTH + 1, 1000, 100_000):
        error = refusal(parse_json, b'{"a":' * depth + b"1" + b"}" * depth)
        assert (error.kind.slug, error.field) == ("invalid-json", "body")
        assert f"deeper than {MAX_JSON_DEPTH}" in error.detail


@pytest.mark.parametrize("raw", [b"1e400", b"[-1e400]", b'{"a": 1E999}'])
def test_numbers_that_overflow_a_double_are_invalid_json(raw):
    assert refusal(parse_json, raw).kind.slug == "invalid-json"


@pytest.mark.parametrize("raw", [b'"\\ud800"', b'["\\udfff"]', b'{"\\udc00": 1}',
                                 b'"\xed\xa0\x80"'])
def test_lone_surrogates_are_invalid_json(raw):
    error = refusal(parse_json, raw)
    assert error.kind.slug == "invalid-json"
    assert "surrogate" in error.detail


def test_integers_beyond_64_bits_read_as_doubles_as_in_javascript():
    assert parse_json(b"[18446744073709551616]") == [18446744073709551616.0]
    assert parse_json(b"[18446744073709551615]") == [18446744073709551615]


def _opts(path, value):
    """``{"a": {"b": value}}`` for the path ``a.b``."""
    *parents, leaf = path.split(".")
    opts = node = {}
    for name in parents:
        node[name] = {"type": "fixed"} if name == "backoff" else (
            {"id": "d"} if name == "deduplication" else (
                {"every": 1000} if name == "repeat" and leaf != "every" else {}))
        node = node[name]
    node[leaf] = value
    return opts


RANGED_OPTIONS = [
    *INTEGER_OPTIONS.items(),
    ("backoff", bounds.DELAY), ("backoff.delay", bounds.DELAY),
    ("deduplication.ttl", bounds.POSITIVE_DELAY),
    ("removeOnComplete", bounds.COUNT), ("removeOnFail.age", bounds.AGE),
    ("removeOnFail.count", bounds.COUNT), ("removeOnComplete.limit", bounds.COUNT),
    ("repeat.every", bounds.POSITIVE_DELAY), ("repeat.limit", bounds.POSITIVE_COUNT),
    ("repeat.count", bounds.COUNT), ("repeat.offset", bounds.DELAY),
    ("repeat.startDate", bounds.TIMESTAMP), ("repeat.endDate", bounds.TIMESTAMP),
]


@pytest.mark.parametrize(("path", "bound"), RANGED_OPTIONS)
def test_every_numeric_option_takes_both_ends_of_its_range(path, bound):
    for value in (bound.minimum, bound.maximum):
        if path == "repeat.endDate" and value == bound.minimum:
            continue  # an end before now is valid, and tested below
        [job] = validate_jobs([{"name": "n", "data": 1, "opts": _opts(path, value)}])
        assert job.opts == _opts(path, value)


@pytest.mark.parametrize(("path", "bound"), RANGED_OPTIONS)
@pytest.mark.parametrize("past", ["below", "above", "2**64", "1e20", "float", "text"])
def test_every_numeric_option_refuses_what_is_outside_its_range(path, bound, past):
    value = {"below": bound.minimum - 1, "above": bound.maximum + 1, "2**64": 2**64,
             "1e20": 1e20, "float": bound.minimum + 0.5, "text": str(bound.minimum)}[past]
    error = refusal(validate_jobs, [{"name": "n", "data": 1, "opts": _opts(path, value)}])
    assert (error.kind.slug, error.field) == ("invalid-field", f"[0].opts.{path}")
    if past != "text" or not path.endswith("Date"):
        assert str(bound.maximum) in error.detail


def test_the_options_of_bullmq_5_are_accepted():
    opts = {
        "keepLogs": 50, "stackTraceLimit": 10, "sizeLimit": 1024, "timestamp": 1_700_000_000_000,
        "removeDependencyOnFailure": True, "failParentOnFailure": False,
        "backoff": {"type": "exponential", "delay": 100, "jitter": 0.5},
        "deduplication": {"id": "d", "ttl": 1000, "extend": True, "replace": False,
                          "keepLastIfActive": True},
        "removeOnFail": {"age": 3600, "count": 10, "limit": 100},
        "telemetry": {"metadata": "trace", "omitContext": True},
        "repeat": {"pattern": "0 15 10 * * 1-5", "tz": "Europe/Paris", "limit": 10,
                   "startDate": "2030-01-01T00:00:00Z", "endDate": 4_102_444_800_000,
                   "key": "report", "utc": False},
    }
    [job] = validate_jobs([{"name": "n", "data": 1, "opts": opts}])
    assert job.opts == opts
    [job] = validate_jobs([{"name": "n", "data": 1, "opts": {"repeat": {
        "pattern": "*/5 * * * *", "immediately": True}}}])
    assert job.opts["repeat"]["immediately"] is True


def test_debounce_is_stored_as_deduplication():
    [job] = validate_jobs([{"name": "n", "data": 1, "opts": {"debounce": {"id": "x"}}}])
    assert job.opts == {"deduplication": {"id": "x"}}
    error = refusal(validate_jobs, [{"name": "n", "data": 1, "opts": {
        "debounce": {"id": "x"}, "deduplication": {"id": "x"}}}])
    assert error.field == "[0].opts.debounce"


@pytest.mark.parametrize(("opts", "field", "fragment"), [
    ({"parent": {"id": "1", "queue": "bull:other"}}, "parent", "FlowProducer"),
    ({"repeatJobKey": "x"}, "repeatJobKey", "job scheduler"),
    ({"prevMillis": 5}, "prevMillis", "job schedulers"),
    ({"repeat": {"every": 5, "nthDayOfWeek": 2}}, "repeat.nthDayOfWeek", "1#2"),
    ({"repeat": {"every": 5, "currentDate": 5}}, "repeat.currentDate", "startDate"),
    ({"repeat": {"every": 5, "jobId": "x"}}, "repeat.jobId", "deprecated"),
])
def test_refused_options_say_why(opts, field, fragment):
    error = refusal(validate_jobs, [{"name": "n", "data": 1, "opts": opts}])
    assert (error.kind.slug, error.field) == ("unknown-field", f"[0].opts.{field}")
    assert fragment in error.detail


@pytest.mark.parametrize(("repeat", "field"), [
    ({"pattern": "61 * * * *"}, "pattern"),
    ({"pattern": "not cron at all"}, "pattern"),
    ({"pattern": "@hourly"}, "pattern"),
    ({"pattern": "* * * * * * *"}, "pattern"),
    ({"pattern": "0 0 30 2 *"}, "pattern"),  # February 30th never comes
    ({"pattern": "H * * * *"}, "pattern"),
    ({"pattern": "*/0 * * * *"}, "pattern"),
    ({"pattern": "* " * 200 + "*"}, "pattern"),
    ({"pattern": ""}, "pattern"),
    ({"pattern": 5}, "pattern"),
    ({"pattern": "* * * * *", "every": 1000}, "every"),
    ({}, "every"),
    ({"pattern": "* * * * *", "tz": "Mars/Olympus"}, "tz"),
    ({"pattern": "* * * * *", "tz": "../../etc/passwd"}, "tz"),
    ({"pattern": "* * * * *", "tz": "America"}, "tz"),
    ({"pattern": "* * * * *", "startDate": "2030-01-01"}, "startDate"),
    ({"pattern": "* * * * *", "startDate": "tomorrow"}, "startDate"),
    ({"pattern": "* * * * *", "startDate": "0001-01-01T00:00Z"}, "startDate"),
    ({"pattern": "* * * * *", "startDate": 10, "endDate": 5}, "endDate"),
    ({"pattern": "* * * * *", "startDate": 10, "immediately": True}, "immediately"),
    ({"pattern": "* * * * *", "utc": "yes"}, "utc"),
])
def test_bad_schedules_name_the_field(repeat, field):
    error = refusal(validate_jobs, [{"name": "n", "data": 1, "opts": {"repeat": repeat}}])
    assert (error.kind.slug, error.field) == ("invalid-field", f"[0].opts.repeat.{field}")


def test_parent_failure_options_exclude_each_other():
    error = refusal(validate_jobs, [{"name": "n", "data": 1, "opts": {
        "failParentOnFailure": True, "removeDependencyOnFailure": True}}])
    assert error.field == "[0].opts.removeDependencyOnFailure"


def test_size_limit_is_checked_against_the_data():
    [job] = validate_jobs([{"name": "n", "data": "abc", "opts": {"sizeLimit": 5}}])
    assert job.data == "abc"
    error = refusal(validate_jobs, [{"name": "n", "data": "abcd", "opts": {"sizeLimit": 5}}])
    assert error.field == "[0].data"
    assert "6 bytes" in error.detail


@pytest.mark.parametrize(("query", "field"), [
    ({"start": str(2**60)}, "start"), ({"start": str(2**63 - 1)}, "start"),
    ({"start": "²"}, "start"), ({"start": "1_000"}, "start"), ({"length": "٣"}, "length"),
    ({"start": "9" * 5000}, "start"),
])
def test_paging_refuses_numbers_redis_cannot_take(query, field):
    error = refusal(validate_page, query)
    assert (error.kind.slug, error.field) == ("invalid-field", field)


def test_paging_takes_the_largest_safe_start():
    assert validate_page({"start": str(bounds.MAX_SAFE_INTEGER)}).start == bounds.MAX_SAFE_INTEGER


def _doc(name):
    return (Path(__file__).parent.parent / "docs" / name).read_text()


def test_the_compatibility_doc_lists_every_option_with_its_range_and_every_refusal():
    text = _doc("compatibility.md")
    rows = {line.split("|")[1].strip(): line for line in text.splitlines()
            if line.startswith("| `")}
    for name, bound in INTEGER_OPTIONS.items():
        row = rows[f"`{name}`"]
        assert f"{bound.maximum}" in row or (
            bound.maximum == bounds.MAX_DELAY_MS and "315360000000" in row), name
    for name in (*BOOLEAN_OPTIONS, "backoff", "jobId", "deduplication", "debounce",
                 "removeOnComplete", "repeat", "telemetry"):
        assert any(f"`{name}`" in key for key in rows), name
    for name in REFUSED_JOB_OPTIONS:
        assert f"`{name}`" in rows, name
    for name in REFUSED_REPEAT_OPTIONS:
        assert f"`repeat.{name}`" in rows, name


def test_the_workers_doc_quotes_the_registration_ranges():
    text = _doc("workers.md")
    for bound in (bounds.CONCURRENCY, bounds.ENDPOINT_TIMEOUT, bounds.ASYNC_TIMEOUT,
                  bounds.LIMITER_MAX, bounds.LIMITER_DURATION, bounds.AGE):
        assert f"{bound.minimum} to {bound.maximum}" in text, bound
