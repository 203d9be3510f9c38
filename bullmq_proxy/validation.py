"""Input validation for queue names, jobs and paging, shared by REST and WebSocket.

Everything here raises ``ProxyError`` naming the offending field, so that bad input is
refused before any Redis call.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import attrs

from bullmq_proxy.config import Config
from bullmq_proxy.errors import INVALID_JSON, ProxyError, invalid, unknown
from bullmq_proxy.redis.cluster import queue_keys_share_a_slot

MAX_PRIORITY = 2_097_152
MAX_PAGE_LENGTH = 100
JOB_FIELDS = frozenset({"name", "data", "opts"})
JOB_OPTS = frozenset({
    "delay", "lifo", "priority", "attempts", "backoff", "jobId", "deduplication",
    "removeOnComplete", "removeOnFail", "repeat",
})
BACKOFF_TYPES = frozenset({"fixed", "exponential"})
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


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: bytes) -> Any:
    """Decode a request body strictly: UTF-8, standard JSON, no NaN or Infinity."""
    if not raw.strip():
        raise ProxyError(INVALID_JSON, "The request body is empty; send a JSON document.", "body")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise ProxyError(INVALID_JSON, "The request body is not UTF-8 text.", "body") from None
    except ValueError as err:
        detail = f"The request body is not valid JSON: {err}"
        raise ProxyError(INVALID_JSON, detail, "body") from None


def is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return (is_integer(value) or isinstance(value, float)) and math.isfinite(value)


def require_object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(field, f"{field} must be a JSON object")
    return value


def refuse_unknown(value: Mapping[str, Any], allowed: frozenset[str], field: str) -> None:
    for key in value:
        if key not in allowed:
            raise unknown(f"{field}.{key}" if field else key)


def require_int(value: Any, field: str, minimum: int, maximum: int | None = None) -> int:
    if not is_integer(value) or value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise invalid(field, f"{field} must be an integer {bound}")
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
    """removeOnComplete/removeOnFail: a boolean, a count, or ``{age, count}``."""
    if isinstance(value, bool):
        return
    if is_integer(value):
        require_int(value, field, 0)
        return
    obj = require_object(value, field)
    refuse_unknown(obj, frozenset({"age", "count"}), field)
    for key in ("age", "count"):
        if key in obj:
            require_int(obj[key], f"{field}.{key}", 0)


def _validate_backoff(value: Any, field: str) -> None:
    if is_integer(value):
        require_int(value, field, 0)
        return
    obj = require_object(value, field)
    refuse_unknown(obj, frozenset({"type", "delay"}), field)
    if obj.get("type") not in BACKOFF_TYPES:
        raise invalid(f"{field}.type", f"{field}.type must be \"fixed\" or \"exponential\"")
    if "delay" in obj:
        require_int(obj["delay"], f"{field}.delay", 0)


def _validate_deduplication(value: Any, field: str) -> None:
    obj = require_object(value, field)
    refuse_unknown(obj, frozenset({"id", "ttl"}), field)
    if not isinstance(obj.get("id"), str) or not obj["id"]:
        raise invalid(f"{field}.id", f"{field}.id must be a non-empty string")
    if "ttl" in obj:
        require_int(obj["ttl"], f"{field}.ttl", 1)


def _validate_repeat(value: Any, field: str) -> None:
    obj = require_object(value, field)
    refuse_unknown(obj, frozenset({"every", "limit", "key", "immediately"}), field)
    if "every" not in obj:
        raise invalid(f"{field}.every", f"{field}.every is required")
    require_int(obj["every"], f"{field}.every", 1)
    if "limit" in obj:
        require_int(obj["limit"], f"{field}.limit", 1)
    if "key" in obj and (not isinstance(obj["key"], str) or not obj["key"]):
        raise invalid(f"{field}.key", f"{field}.key must be a non-empty string")
    if "immediately" in obj and not isinstance(obj["immediately"], bool):
        raise invalid(f"{field}.immediately", f"{field}.immediately must be a boolean")


def validate_job_opts(value: Any, field: str) -> dict[str, Any]:
    opts = require_object(value, field)
    refuse_unknown(opts, JOB_OPTS, field)
    if "delay" in opts:
        require_int(opts["delay"], f"{field}.delay", 0)
    if "priority" in opts:
        require_int(opts["priority"], f"{field}.priority", 1, MAX_PRIORITY)
    if "attempts" in opts:
        require_int(opts["attempts"], f"{field}.attempts", 0)
    if "lifo" in opts and not isinstance(opts["lifo"], bool):
        raise invalid(f"{field}.lifo", f"{field}.lifo must be a boolean")
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
        _validate_repeat(opts["repeat"], f"{field}.repeat")
    return opts


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
    return NewJob(name=name, data=job["data"], opts=opts)


def validate_jobs(body: Any) -> list[NewJob]:
    """The body of ``POST /queues/:q/jobs``: an array of ``{name, data, opts}``."""
    if not isinstance(body, list):
        raise invalid("body", "The body must be a JSON array of jobs")
    return [validate_job(item, f"[{index}]") for index, item in enumerate(body)]


def _query_int(query: Mapping[str, str], name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw, 10)
    except ValueError:
        raise invalid(name, f"{name} must be an integer, got {raw!r}") from None


def validate_page(query: Mapping[str, str]) -> Page:
    start = require_int(_query_int(query, "start", 0), "start", 0)
    length = require_int(_query_int(query, "length", 10), "length", 1, MAX_PAGE_LENGTH)
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
