"""Shapes of the queue-management, job-action and job-scheduler requests (JSON Schema)."""

from __future__ import annotations

from typing import Any

from bullmq_proxy.validation import MAX_PAGE_LENGTH, MAX_PRIORITY

# Milliseconds BullMQ can still place on its time axis: a delayed job's score is
# (timestamp + delay) * 4096, which must stay an exact double (below 2^53).
MAX_DELAY_MS = 315_360_000_000  # ten years
# Jobs a bulk action moves per Redis call (BullMQ's `count`): bounds how long one script runs.
MAX_BATCH = 10_000


def integer(minimum: int, maximum: int, **more: Any) -> dict[str, Any]:
    return {"type": "integer", "minimum": minimum, "maximum": maximum, **more}


def obj(properties: dict[str, Any], *required: str, **more: Any) -> dict[str, Any]:
    shape: dict[str, Any] = {"type": "object", "properties": properties,
                             "additionalProperties": False, **more}
    if required:
        shape["required"] = list(required)
    return shape


PAGE_QUERY = obj({
    "start": integer(0, 2**53 - 1, default=0),
    "length": integer(1, MAX_PAGE_LENGTH, default=10),
})
CLEANABLE = ["completed", "failed", "delayed", "wait", "prioritized", "paused"]

CLEAN = obj({
    "grace": integer(0, MAX_DELAY_MS, default=0,
                     description="keep jobs younger than this many ms"),
    "limit": integer(1, MAX_BATCH, default=1000),
    "type": {"enum": CLEANABLE},
}, "type")
DRAIN = obj({"delayed": {"type": "boolean", "default": False}})
RETRY_JOBS = obj({
    "state": {"enum": ["failed", "completed"], "default": "failed"},
    "count": integer(1, MAX_BATCH, default=1000, description="jobs moved per Redis call"),
})
PROMOTE_JOBS = obj({
    "count": integer(1, MAX_BATCH, default=1000, description="jobs moved per Redis call"),
})
OBLITERATE_QUERY = obj({"force": {"type": "boolean", "default": False}})
RATE_LIMIT = obj({
    "max": integer(1, 1_000_000, description="jobs per duration, across all workers"),
    "duration": integer(1, MAX_DELAY_MS, description="ms"),
}, "max", "duration")
CONCURRENCY = obj({"max": integer(1, 100_000, description="active jobs across all workers")},
                  "max")

REMOVE_JOB_QUERY = obj({"children": {"type": "boolean", "default": True}})
JOB_DATA = obj({"data": {"description": "any JSON value"}}, "data")
PRIORITY = obj({
    "priority": integer(0, MAX_PRIORITY, description="0 takes the priority away"),
    "lifo": {"type": "boolean", "default": False},
}, "priority")
DELAY = obj({"delay": integer(0, MAX_DELAY_MS, description="ms from now")}, "delay")
FIND_QUERY = obj({
    **PAGE_QUERY["properties"],
    "name": {"type": "string", "minLength": 1, "maxLength": 1000},
    "statuses": {"type": "string"},
})

_DATE = {"anyOf": [integer(0, 2**53 - 1), {"type": "string", "format": "date-time",
                                           "minLength": 1, "maxLength": 64}],
         "description": "epoch ms, or an ISO 8601 date-time with an offset "
                        "(2030-01-01T08:00:00Z)"}
SCHEDULER = obj({
    "every": integer(1, MAX_DELAY_MS, description="ms between jobs"),
    "pattern": {"type": "string", "minLength": 1, "maxLength": 256,
                "description": "cron, 5 fields or 6 with seconds first"},
    "tz": {"type": "string", "minLength": 1, "maxLength": 64},
    "limit": integer(1, 2**31 - 1),
    "startDate": _DATE,
    "endDate": _DATE,
    "immediately": {"type": "boolean"},
    "offset": integer(0, MAX_DELAY_MS),
    "template": obj({
        "name": {"type": "string", "minLength": 1, "maxLength": 1000},
        "data": {"description": "any JSON value"},
        "opts": {"type": "object"},
    }),
}, anyOf=[{"required": ["every"], "not": {"required": ["pattern"]}},
          {"required": ["pattern"], "not": {"required": ["every"]}}],
   description="a scheduler needs exactly one of every and pattern")
