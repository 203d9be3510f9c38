"""Shapes of what the REST API answers (JSON Schema, for the API document and the tests that
validate every answer against it). Named shapes live in ``COMPONENTS`` and are referred to as
``{"$ref": "#/components/schemas/<name>"}``."""

from __future__ import annotations

from typing import Any

from bullmq_proxy.validation import JOB_STATES


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(kind: str | list[str]) -> dict[str, Any]:
    kinds = [kind] if isinstance(kind, str) else kind
    return {"type": [*kinds, "null"]}


ANY: dict[str, Any] = {}
COUNTS = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0},
          "description": "jobs per state"}
PAGE = {"start": {"type": "integer"}, "length": {"type": "integer"}}

JOB = {
    "type": "object",
    "description": "BullMQ's Job.asJSON(), with data, opts, progress and returnvalue decoded",
    "properties": {
        "id": nullable("string"),
        "name": {"type": "string"},
        "data": ANY,
        "opts": {"type": "object"},
        "progress": ANY,
        "delay": {"type": "integer"},
        "priority": {"type": "integer"},
        "timestamp": {"type": "integer"},
        "attemptsMade": {"type": "integer"},
        "attemptsStarted": {"type": "integer"},
        "stalledCounter": {"type": "integer"},
        "failedReason": nullable("string"),
        "stacktrace": {"type": "array", "items": {"type": "string"}},
        "returnvalue": ANY,
        "processedOn": nullable("integer"),
        "finishedOn": nullable("integer"),
        "parent": nullable("object"),
        "parentKey": nullable("string"),
        "repeatJobKey": nullable("string"),
        "deduplicationId": nullable("string"),
        "state": {"enum": [*JOB_STATES, "unknown", "removed"]},
        "previousState": {"type": "string"},
    },
    "required": ["id", "name", "data", "opts"],
}

QUEUE_BRIEF = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "paused": {"type": "boolean"},
        "counts": COUNTS,
        "worker": {**nullable("string"), "description": "the registered endpoint URL"},
    },
    "required": ["name", "paused", "counts", "worker"],
}
QUEUE = {
    "type": "object",
    "properties": {
        **QUEUE_BRIEF["properties"],
        "globalConcurrency": nullable("integer"),
        "globalRateLimit": {"anyOf": [
            {"type": "object", "properties": {"max": {"type": "integer"},
                                              "duration": {"type": "integer"}},
             "required": ["max", "duration"]},
            {"type": "null"}]},
        "schedulers": {"type": "integer"},
    },
    "required": [*QUEUE_BRIEF["required"], "globalConcurrency", "globalRateLimit",
                 "schedulers"],
}
QUEUE_LIST = {
    "type": "object",
    "properties": {"queues": {"type": "array", "items": ref("QueueBrief")}, **PAGE,
                   "total": {"type": "integer"}, "complete": {"type": "boolean"}},
    "required": ["queues", "start", "length"],
}
JOB_LIST = {
    "type": "object",
    "properties": {"counts": COUNTS, "jobs": {"type": "array", "items": ref("Job")}, **PAGE,
                   "matched": {"type": "integer"}, "scanned": {"type": "integer"},
                   "complete": {"type": "boolean"}},
    "required": ["counts", "jobs", "start", "length"],
}
JOBS = {"type": "array", "items": ref("Job")}
ADDED = {"anyOf": [JOBS, ref("Job"), {
    "type": "object", "properties": {"id": {"type": "string"}, "url": {"type": "string"}},
    "required": ["id", "url"], "description": "202: the job did not finish within wait"}],
    "description": "the jobs added; with ?wait, the finished job"}
LOGS = {"type": "object", "properties": {"logs": {"type": "array", "items": {"type": "string"}},
                                         "count": {"type": "integer"}},
        "required": ["logs", "count"]}
REMOVED = {"type": "object", "properties": {"removed": {"type": "array",
                                                        "items": {"type": "string"}}},
           "required": ["removed"]}
CHILDREN = {
    "type": "object",
    "properties": {
        "unprocessed": {"type": "array", "items": {"type": "string"}},
        "processed": {"type": "object", "description": "child key → return value"},
        "failed": {"type": "array", "items": {"type": "string"}},
        "ignored": {"type": "object", "additionalProperties": {"type": "string"},
                    "description": "child key → failure reason"},
        "counts": COUNTS,
        **PAGE,
    },
    "required": ["unprocessed", "processed", "failed", "ignored", "counts"],
}
SCHEDULER = {
    "type": "object",
    "properties": {
        "id": {"type": "string"}, "name": nullable("string"), "next": nullable("integer"),
        "iterationCount": {"type": "integer"}, "every": {"type": "integer"},
        "pattern": {"type": "string"}, "tz": {"type": "string"}, "limit": {"type": "integer"},
        "startDate": {"type": "integer"}, "endDate": {"type": "integer"},
        "offset": {"type": "integer"}, "template": {"type": "object"},
        "nextJob": {"anyOf": [ref("Job"), {"type": "null"}]},
    },
    "required": ["id"],
}
SCHEDULER_LIST = {
    "type": "object",
    "properties": {"schedulers": {"type": "array", "items": ref("Scheduler")}, **PAGE,
                   "total": {"type": "integer"}},
    "required": ["schedulers", "start", "length", "total"],
}
FLOW_NODE = {
    "type": "object",
    "properties": {"job": ref("Job"), "children": {"type": "array",
                                                   "items": ref("FlowNode")}},
    "required": ["job"],
}
FLOW = {"anyOf": [ref("FlowNode"), {"type": "array", "items": ref("FlowNode")}]}
PULLED = {
    "type": "object",
    "properties": {"job": ref("Job"), "token": {"type": "string", "minLength": 32,
                                                 "description": "the job's lock token"}},
    "required": ["job", "token"],
}
PROBLEM = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"},
        "status": {"type": "integer"}, "detail": {"type": "string"},
        "field": {"type": "string"}, "instance": {"type": "string"},
        "state": {"type": "string", "description": "a conflict's current state"},
        "checks": {"type": "object"},
        "job": {"description": "job-failed: the job, with its failedReason"},
    },
    "required": ["type", "title", "status", "detail", "instance"],
}
TEXT_OK = {"type": "string", "const": "OK", "description": "the original's plain OK"}
TEXT = {"type": "string"}
HEALTH = {"type": "object", "properties": {"status": {"const": "ok"}, "checks": {
    "type": "object", "additionalProperties": {"type": "string"}}}, "required": ["status"]}
WORKER_URLS = {"type": "object", "additionalProperties": nullable("string"),
               "description": "queue → registered endpoint URL"}
WORKER = {
    "type": "object",
    "description": "the registration (secrets redacted) and this instance's view of it; "
                   "only the state when the stored registration is refused",
    "properties": {"queue": {"type": "string"}, "endpoint": {"type": "object"},
                   "opts": {"type": "object"}, "state": {"type": "object"}},
    "required": ["state"],
}

COMPONENTS: dict[str, Any] = {
    "Job": JOB, "QueueBrief": QUEUE_BRIEF, "Queue": QUEUE, "Scheduler": SCHEDULER,
    "FlowNode": FLOW_NODE, "Problem": PROBLEM,
}
