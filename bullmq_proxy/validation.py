"""Input validation for queue names, jobs and paging, shared by REST and WebSocket.

Everything here raises ``ProxyError`` naming the offending field, so that bad input is
refused before any Redis call.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs
import orjson

from bullmq_proxy.bounds import (
    AGE,
    COUNT,
    DELAY,
    INDEX,
    MAX_JSON_DEPTH,
    PAGE_LENGTH,
    POSITIVE_COUNT,
    POSITIVE_DELAY,
    PRIORITY,
    SIZE_LIMIT,
    TIMESTAMP,
    Range,
    is_integer,
)
from bullmq_proxy.config import Config
from bullmq_proxy.cron import ScheduleError, next_run, time_zone
from bullmq_proxy.encoding import encode_json
from bullmq_proxy.errors import INVALID_JSON, UNKNOWN_FIELD, ProxyError, invalid, unknown
from bullmq_proxy.redis.cluster import queue_keys_share_a_slot

# BullMQ's JobsOptions (Node BullMQ 5), by what each holds; docs/compatibility.md lists them.
INTEGER_OPTIONS: Mapping[str, Range] = {
    "delay": DELAY, "priority": PRIORITY, "attempts": COUNT, "keepLogs": COUNT,
    "stackTraceLimit": COUNT, "sizeLimit": SIZE_LIMIT, "timestamp": TIMESTAMP,
}
PARENT_FAILURE_OPTIONS = (
    "failParentOnFailure", "continueParentOnFailure", "ignoreDependencyOnFailure",
    "removeDependencyOnFailure",
)
BOOLEAN_OPTIONS = ("lifo", *PARENT_FAILURE_OPTIONS)
JOB_OPTS = frozenset({
    *INTEGER_OPTIONS, *BOOLEAN_OPTIONS, "backoff", "jobId", "deduplication", "debounce",
    "removeOnComplete", "removeOnFail", "repeat", "telemetry",
})
# Options BullMQ knows that the proxy refuses, each with the reason the refusal gives.
REFUSED_JOB_OPTIONS: Mapping[str, str] = {
    "parent": "a parent makes this job a child of a job in any queue and prefix, past the "
              "token's queue scope, and BullMQ creates a flow's parent and children together; "
              "add flows with a BullMQ FlowProducer",
    "repeatJobKey": "BullMQ sets it on the jobs of a job scheduler; use opts.repeat",
    "prevMillis": "BullMQ keeps it for its job schedulers; use opts.repeat",
}
REPEAT_FIELDS = frozenset({
    "every", "pattern", "limit", "key", "immediately", "tz", "startDate", "endDate", "offset",
    "count", "utc",
})
REFUSED_REPEAT_OPTIONS: Mapping[str, str] = {
    "jobId": "deprecated and unused by BullMQ; use opts.repeat.key",
    "prevMillis": "BullMQ keeps it for its job schedulers",
    "currentDate": "the next run is computed from now (or startDate); use startDate",
    "nthDayOfWeek": "write it in the pattern instead, e.g. 1#2 for the second Monday",
}
DEDUPLICATION_FIELDS = frozenset({"id", "ttl", "extend", "replace", "keepLastIfActive"})
BACKOFF_TYPES = frozenset({"fixed", "exponential"})

JOB_FIELDS = frozenset({"name", "data", "opts"})
JOB_STATES = (
    "waiting", "active", "completed", "failed", "delayed", "prioritized",
    "waiting-children", "paused",
)
DEFAULT_STATES = ("waiting", "active", "completed", "failed")


@attrs.frozen
class NewJob:
    """A validated job to add: the original's ``{name, data, opts}``."""

    name: str
    data: Any
    opts: dict[str, Any]


@attrs.frozen
class Page:
    start: int
    length: int

    @property
    def end(self) -> int:
        return self.start + self.length - 1


def _too_deep(value: Any, limit: int) -> bool:
    """Does ``value`` nest containers more than ``limit`` levels deep? Iterative, so that
    the check itself cannot run out of stack."""
    stack = [(value, 1)] if type(value) in (dict, list) else []
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        for child in node.values() if type(node) is dict else node:
            if type(child) in (dict, list):
                stack.append((child, depth + 1))
    return False


def parse_json(raw: bytes) -> Any:
    """Decode a request body strictly: UTF-8, standard JSON, no NaN or Infinity, no number
    that overflows a double, no lone surrogate, at most ``MAX_JSON_DEPTH`` levels deep.

    orjson reads integers beyond 64 bits as doubles, as JavaScript does, so such a number is
    refused later by the field that wants an integer."""
    if not raw.strip():
        raise ProxyError(INVALID_JSON, "The request body is empty; send a JSON document.", "body")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        if "UTF-8" in str(err):
            raise ProxyError(INVALID_JSON, "The request body is not UTF-8 text (or holds a "
                             "lone surrogate).", "body") from None
        if "depth limit" in str(err):
            raise _too_deep_problem() from None
        raise ProxyError(INVALID_JSON, f"The request body is not valid JSON: {err}",
                         "body") from None
    if _too_deep(value, MAX_JSON_DEPTH):
        raise _too_deep_problem()
    return value


def _too_deep_problem() -> ProxyError:
    return ProxyError(INVALID_JSON, f"The request body nests deeper than {MAX_JSON_DEPTH} "
                      "levels.", "body")


def is_number(value: Any) -> bool:
    return (is_integer(value) or isinstance(value, float)) and math.isfinite(value)


def require_object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(field, f"{field} must be a JSON object")
    return value


def refuse_unknown(value: Mapping[str, Any], allowed: frozenset[str], field: str,
                   refused: Mapping[str, str] | None = None) -> None:
    """Unknown keys are an unknown-field problem; ``refused`` keys (known, but not accepted
    here) say why."""
    for key in value:
        if key not in allowed:
            name = f"{field}.{key}" if field else key
            if refused and key in refused:
                raise ProxyError(UNKNOWN_FIELD, f"{name} is not accepted: {refused[key]}", name)
            raise unknown(name)


def require_in(value: Any, field: str, bound: Range) -> int:
    """An integer inside ``bound``; the refusal quotes the range."""
    if value not in bound:
        raise invalid(field, f"{field} must be {bound.describe()}")
    return value


def require_bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise invalid(field, f"{field} must be a boolean")
    return value


def require_text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise invalid(field, f"{field} must be a non-empty string")
    return value


def validate_queue_name(name: str, config: Config, field: str = "queueName") -> str:
    if len(name) < config.min_queue_name_length:
        raise invalid(
            field,
            f"{field} must be at least {config.min_queue_name_length} characters long",
        )
    if len(name) > config.max_queue_name_length:
        raise invalid(
            field,
            f"{field} must be at most {config.max_queue_name_length} characters long",
        )
    if ":" in name:
        raise invalid(field, f"{field} must not contain ':' (BullMQ's key separator)")
    if config.redis.cluster and not queue_keys_share_a_slot(config.queue_prefix, name):
        raise invalid(
            field,
            "with Redis Cluster the queue name needs a hash tag, e.g. {mail}, unless "
            "QUEUE_PREFIX has one",
        )
    return name


def validate_job_id(value: Any, field: str) -> str:
    """A job id as BullMQ accepts it: text, not an integer (those are BullMQ's own ids)."""
    if not isinstance(value, str) or not value:
        raise invalid(field, f"{field} must be a non-empty string")
    if ":" in value:
        raise invalid(field, f"{field} must not contain ':'")
    if value.lstrip("-").isdigit():
        raise invalid(field, f"{field} must not be an integer: BullMQ reserves those")
    return value


def _validate_keep(value: Any, field: str) -> None:
    """removeOnComplete/removeOnFail: a boolean, a count, or ``{age, count, limit}``."""
    if isinstance(value, bool):
        return
    if not isinstance(value, dict):
        if value not in COUNT:
            raise invalid(field, f"{field} must be a boolean, {COUNT.describe()}, or "
                                 "{age, count, limit}")
        return
    obj = value
    refuse_unknown(obj, frozenset({"age", "count", "limit"}), field)
    if "age" in obj:
        require_in(obj["age"], f"{field}.age", AGE)
    for key in ("count", "limit"):
        if key in obj:
            require_in(obj[key], f"{field}.{key}", COUNT)


def _validate_backoff(value: Any, field: str) -> None:
    if not isinstance(value, dict):
        if value not in DELAY:
            raise invalid(field, f"{field} must be {DELAY.describe()}, or {{type, delay}}")
        return
    obj = value
    refuse_unknown(obj, frozenset({"type", "delay", "jitter"}), field)
    if obj.get("type") not in BACKOFF_TYPES:
        raise invalid(f"{field}.type", f"{field}.type must be \"fixed\" or \"exponential\"")
    if "delay" in obj:
        require_in(obj["delay"], f"{field}.delay", DELAY)
    if "jitter" in obj and not (is_number(obj["jitter"]) and 0 <= obj["jitter"] <= 1):
        raise invalid(f"{field}.jitter", f"{field}.jitter must be a number between 0 and 1")


def _validate_deduplication(value: Any, field: str) -> None:
    obj = require_object(value, field)
    refuse_unknown(obj, DEDUPLICATION_FIELDS, field)
    require_text(obj.get("id"), f"{field}.id")
    if "ttl" in obj:
        require_in(obj["ttl"], f"{field}.ttl", POSITIVE_DELAY)
    for key in ("extend", "replace", "keepLastIfActive"):
        if key in obj:
            require_bool(obj[key], f"{field}.{key}")


def _date_ms(value: Any, field: str) -> int:
    """``startDate``/``endDate``: epoch ms, or an ISO 8601 date with its time zone (bullmq
    reads a date without one in the proxy's local time, which the client cannot know)."""
    if is_integer(value):
        return require_in(value, field, TIMESTAMP)
    example = (f"epoch milliseconds ({TIMESTAMP.describe()}) or an ISO 8601 date with a time "
               "zone, e.g. 2030-01-31T09:00Z")
    if not isinstance(value, str):
        raise invalid(field, f"{field} must be {example}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(field, f"{field} must be {example}") from None
    if parsed.tzinfo is None:
        raise invalid(field, f"{field} needs a time zone (Z or an offset such as +01:00)")
    return require_in(int(parsed.timestamp() * 1000), field, TIMESTAMP)


def validate_repeat(value: Any, field: str) -> None:
    """BullMQ's RepeatOptions: of a repeating job's ``opts.repeat``, or a job scheduler."""
    obj = require_object(value, field)
    refuse_unknown(obj, REPEAT_FIELDS, field, REFUSED_REPEAT_OPTIONS)
    if ("every" in obj) == ("pattern" in obj):
        raise invalid(f"{field}.every",
                      f"{field} needs exactly one of every (ms) and pattern (cron)")
    if "every" in obj:
        require_in(obj["every"], f"{field}.every", POSITIVE_DELAY)
    for key, bound in (("limit", POSITIVE_COUNT), ("count", COUNT), ("offset", DELAY)):
        if key in obj:
            require_in(obj[key], f"{field}.{key}", bound)
    if "key" in obj:
        require_text(obj["key"], f"{field}.key")
    for key in ("immediately", "utc"):
        if key in obj:
            require_bool(obj[key], f"{field}.{key}")
    start = _date_ms(obj["startDate"], f"{field}.startDate") if "startDate" in obj else None
    end = _date_ms(obj["endDate"], f"{field}.endDate") if "endDate" in obj else None
    if start is not None and end is not None and end < start:
        raise invalid(f"{field}.endDate", f"{field}.endDate is before {field}.startDate")
    if obj.get("immediately") and start is not None:
        raise invalid(f"{field}.immediately",
                      f"{field}.immediately and {field}.startDate exclude each other")
    zone = None
    if "tz" in obj:
        tz = require_text(obj["tz"], f"{field}.tz")
        try:
            zone = time_zone(tz)
        except ScheduleError as err:
            raise invalid(f"{field}.tz", f"{field}.tz: {err}") from None
    if "pattern" in obj:
        pattern = require_text(obj["pattern"], f"{field}.pattern")
        after = max(int(time.time() * 1000), start or 0)
        try:
            next_run(pattern, zone, after)
        except ScheduleError as err:
            raise invalid(f"{field}.pattern", f"{field}.pattern: {err}") from None


def validate_job_opts(value: Any, field: str) -> dict[str, Any]:
    """BullMQ's JobsOptions, each checked for type and range; returns the options to store."""
    opts = require_object(value, field)
    refuse_unknown(opts, JOB_OPTS, field, REFUSED_JOB_OPTIONS)
    if "debounce" in opts:
        # BullMQ 5's older name, which bullmq (Python) does not read: store it by its new one.
        if "deduplication" in opts:
            raise invalid(f"{field}.debounce",
                          f"{field}.debounce is the old name of deduplication; give only one")
        opts = {("deduplication" if key == "debounce" else key): item
                for key, item in opts.items()}
    for key, bound in INTEGER_OPTIONS.items():
        if key in opts:
            require_in(opts[key], f"{field}.{key}", bound)
    for key in BOOLEAN_OPTIONS:
        if key in opts:
            require_bool(opts[key], f"{field}.{key}")
    exclusive = [key for key in PARENT_FAILURE_OPTIONS if opts.get(key)]
    if len(exclusive) > 1:
        raise invalid(f"{field}.{exclusive[1]}",
                      f"{field}: {' and '.join(exclusive)} exclude each other")
    if "jobId" in opts:
        validate_job_id(opts["jobId"], f"{field}.jobId")
    if "backoff" in opts:
        _validate_backoff(opts["backoff"], f"{field}.backoff")
    if "deduplication" in opts:
        _validate_deduplication(opts["deduplication"], f"{field}.deduplication")
    for key in ("removeOnComplete", "removeOnFail"):
        if key in opts:
            _validate_keep(opts[key], f"{field}.{key}")
    if "repeat" in opts:
        validate_repeat(opts["repeat"], f"{field}.repeat")
    if "telemetry" in opts:
        telemetry = require_object(opts["telemetry"], f"{field}.telemetry")
        refuse_unknown(telemetry, frozenset({"metadata", "omitContext"}), f"{field}.telemetry")
        if "metadata" in telemetry:
            require_text(telemetry["metadata"], f"{field}.telemetry.metadata")
        if "omitContext" in telemetry:
            require_bool(telemetry["omitContext"], f"{field}.telemetry.omitContext")
    return opts


def new_job(name: str, data: Any, opts: dict[str, Any], data_field: str) -> NewJob:
    """A job from validated options; ``sizeLimit`` is checked here, as Node BullMQ checks it
    when adding (bullmq for Python ignores it)."""
    limit = opts.get("sizeLimit")
    if limit is not None:
        size = len(encode_json(data))
        if size > limit:
            raise invalid(data_field, f"{data_field} is {size} bytes of JSON, over its "
                                      f"sizeLimit of {limit} bytes")
    return NewJob(name=name, data=data, opts=opts)


def validate_job(value: Any, field: str) -> NewJob:
    """``{name, data, opts}`` at ``field`` ("" for a job that is the body itself)."""
    def at(key: str) -> str:
        return f"{field}.{key}" if field else key

    job = require_object(value, field or "body")
    refuse_unknown(job, JOB_FIELDS, field)
    name = job.get("name")
    if not isinstance(name, str) or not name:
        raise invalid(at("name"), f"{at('name')} is required and must be a non-empty string")
    if "data" not in job:
        raise invalid(at("data"), f"{at('data')} is required (any JSON value, null included)")
    opts = validate_job_opts(job["opts"], at("opts")) if "opts" in job else {}
    return new_job(name, job["data"], opts, at("data"))


def validate_jobs(body: Any) -> list[NewJob]:
    """The body of ``POST /queues/:q/jobs``: an array of ``{name, data, opts}``."""
    if not isinstance(body, list):
        raise invalid("body", "The body must be a JSON array of jobs")
    return [validate_job(item, f"[{index}]") for index, item in enumerate(body)]


def _query_int(query: Mapping[str, str], name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    # Only ASCII digits: int() also reads "²"-like digits and "1_000".
    digits = raw[1:] if raw[:1] == "-" else raw
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 20:
        raise invalid(name, f"{name} must be an integer, got {raw[:40]!r}")
    return int(raw, 10)


def validate_page(query: Mapping[str, str]) -> Page:
    start = require_in(_query_int(query, "start", 0), "start", INDEX)
    length = require_in(_query_int(query, "length", 10), "length", PAGE_LENGTH)
    return Page(start, length)


def validate_states(raw: str | None) -> tuple[str, ...]:
    if raw is None:
        return DEFAULT_STATES
    states = tuple(dict.fromkeys(s.strip() for s in raw.split(",") if s.strip()))
    if not states:
        raise invalid("statuses", "statuses must name at least one state")
    for state in states:
        if state not in JOB_STATES:
            raise invalid(
                "statuses", f"statuses: {state!r} is not one of {', '.join(JOB_STATES)}"
            )
    return states
