"""Shapes of the queue-management, job-action and job-scheduler requests (JSON Schema)."""

from __future__ import annotations

from typing import Any

from bullmq_proxy.bounds import (
    ASYNC_TIMEOUT,
    DELAY,
    INDEX,
    MAX_DELAY_MS,
    PAGE_LENGTH,
    POSITIVE_COUNT,
    POSITIVE_DELAY,
    PRIORITY,
    TIMESTAMP,
    Range,
)

# Jobs a bulk action moves per Redis call (BullMQ's `count`): bounds how long one script runs.
MAX_BATCH = 10_000


def integer(minimum: int, maximum: int, **more: Any) -> dict[str, Any]:
    return {"type": "integer", "minimum": minimum, "maximum": maximum, **more}


def ranged(bound: Range, **more: Any) -> dict[str, Any]:
    """The shape of an integer in one of ``bounds.py``'s ranges."""
    if bound.unit:
        more.setdefault("description", bound.unit)
    return integer(bound.minimum, bound.maximum, **more)


def obj(properties: dict[str, Any], *required: str, **more: Any) -> dict[str, Any]:
    shape: dict[str, Any] = {"type": "object", "properties": properties,
                             "additionalProperties": False, **more}
    if required:
        shape["required"] = list(required)
    return shape


PAGE_QUERY = obj({
    "start": ranged(INDEX, default=0),
    "length": ranged(PAGE_LENGTH, default=10),
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
    "priority": integer(0, PRIORITY.maximum, description="0 takes the priority away"),
    "lifo": {"type": "boolean", "default": False},
}, "priority")
CHANGE_DELAY = obj({"delay": ranged(DELAY, description="ms from now")}, "delay")
FIND_QUERY = obj({
    **PAGE_QUERY["properties"],
    "name": {"type": "string", "minLength": 1, "maxLength": 1000,
             "description": "only jobs of this name (a bounded scan)"},
    "statuses": {"type": "string", "description": "comma-separated states (default: "
                                                  "waiting, active, completed, failed)"},
})

_DATE = {"anyOf": [ranged(TIMESTAMP), {"type": "string", "format": "date-time",
                                           "minLength": 1, "maxLength": 64}],
         "description": "epoch ms, or an ISO 8601 date-time with an offset "
                        "(2030-01-01T08:00:00Z)"}
SCHEDULER = obj({
    "every": ranged(POSITIVE_DELAY, description="ms between jobs"),
    "pattern": {"type": "string", "minLength": 1, "maxLength": 256,
                "description": "cron, 5 fields or 6 with seconds first"},
    "tz": {"type": "string", "minLength": 1, "maxLength": 64},
    "limit": ranged(POSITIVE_COUNT),
    "startDate": _DATE,
    "endDate": _DATE,
    "immediately": {"type": "boolean"},
    "offset": ranged(DELAY),
    "template": obj({
        "name": {"type": "string", "minLength": 1, "maxLength": 1000},
        "data": {"description": "any JSON value"},
        "opts": {"type": "object"},
    }),
}, anyOf=[{"required": ["every"], "not": {"required": ["pattern"]}},
          {"required": ["pattern"], "not": {"required": ["every"]}}],
   description="a scheduler needs exactly one of every and pattern")
# A flow is a tree; its nodes are checked one by one by core/flows.py (FlowShape), with the
# job rules of an added job, depth and size bounds.
FLOW_BODY = {"type": ["object", "array"],
             "description": "a flow {name, queueName, data, opts, children: [flows]} or a "
                            "non-empty array of them"}

# A long poll waits at most this long (the API conventions' bound).
MAX_WAIT_MS = 30_000
PULL = obj({
    "lockDuration": ranged(ASYNC_TIMEOUT, default=30_000,
                           description="ms the job stays locked to the token (extend it "
                                       "with POST .../lock)"),
    "wait": integer(0, MAX_WAIT_MS, default=0, description="ms to wait for a job (long poll)"),
    "name": {"type": "string", "description": "not supported: a pull takes the next job"},
})
ADD_QUERY = obj({
    "wait": integer(0, MAX_WAIT_MS, default=0,
                    description="ms to wait for the one job added to finish"),
})
