"""Queue-socket commands of queue management, job actions and job schedulers, named and
ordered as BullMQ's Queue (and, for job actions, Job) methods take them. Each argument is
checked against the same declared shape as its REST field (``schemas/admin.py``) and named
``args[i]``; the work is the core's, as for REST.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs

from bullmq_proxy.core import Core
from bullmq_proxy.core.schedulers import checked_scheduler
from bullmq_proxy.errors import NOT_FOUND, ProxyError, invalid
from bullmq_proxy.rights import Right
from bullmq_proxy.schemas import admin as shapes
from bullmq_proxy.schemas.check import Schema, check
from bullmq_proxy.validation import validate_job_id

_REQUIRED = object()


@attrs.frozen
class AdminScope:
    """What an admin command acts on: the socket's queue name and the core."""

    queue: str
    core: Core


class Positional:
    """Positional arguments, each checked against a declared shape."""

    def __init__(self, values: list[Any], arity: int) -> None:
        if len(values) > arity:
            raise invalid(f"args[{arity}]", f"this command takes at most {arity} arguments")
        self._values = values

    def get(self, index: int, schema: Schema, default: Any = _REQUIRED) -> Any:
        field = f"args[{index}]"
        value = self._values[index] if index < len(self._values) else None
        if value is None:
            if default is _REQUIRED:
                raise invalid(field, f"{field} is required")
            return default
        return check(schema, value, field)

    def given(self, index: int) -> bool:
        """Whether argument ``index`` was sent at all (``null`` included)."""
        return index < len(self._values)

    def raw(self, index: int) -> Any:
        return self._values[index]

    def job_id(self, index: int) -> str:
        value = self.get(index, {"type": ["string", "integer"]})
        text = str(value)
        return text if text.isdigit() else validate_job_id(text, f"args[{index}]")

    def options(self, index: int, schema: Schema) -> dict[str, Any]:
        """An options object (``{force}``, ``{state, count}``...), defaults filled in."""
        return check(schema, self.get(index, {"type": "object"}, {}), f"args[{index}]")


def _field(shape: Schema, name: str) -> Schema:
    return shape["properties"][name]


async def _clean(scope: AdminScope, args: Positional) -> Any:
    grace = args.get(0, _field(shapes.CLEAN, "grace"))
    limit = args.get(1, _field(shapes.CLEAN, "limit"), 1000)
    state = args.get(2, _field(shapes.CLEAN, "type"), "completed")
    return (await scope.core.queue_admin.clean(scope.queue, grace, limit, state))["removed"]


async def _drain(scope: AdminScope, args: Positional) -> Any:
    await scope.core.queue_admin.drain(scope.queue, args.get(0, {"type": "boolean"}, False))


async def _obliterate(scope: AdminScope, args: Positional) -> Any:
    opts = args.options(0, shapes.OBLITERATE_QUERY)
    await scope.core.queue_admin.obliterate(scope.queue, opts["force"])


async def _retry_jobs(scope: AdminScope, args: Positional) -> Any:
    opts = args.options(0, shapes.RETRY_JOBS)
    await scope.core.queue_admin.retry_jobs(scope.queue, opts["state"], opts["count"])


async def _promote_jobs(scope: AdminScope, args: Positional) -> Any:
    opts = args.options(0, shapes.PROMOTE_JOBS)
    await scope.core.queue_admin.promote_jobs(scope.queue, opts["count"])


async def _remove(scope: AdminScope, args: Positional) -> Any:
    opts = args.options(1, shapes.obj({"removeChildren": {"type": "boolean",
                                                          "default": True}}))
    await scope.core.job_admin.remove(scope.queue, args.job_id(0), opts["removeChildren"])
    return 1


async def _summary(scope: AdminScope, args: Positional) -> Any:
    return await scope.core.queue_admin.summary(scope.queue)


async def _set_concurrency(scope: AdminScope, args: Positional) -> Any:
    await scope.core.queue_admin.set_concurrency(
        scope.queue, args.get(0, _field(shapes.CONCURRENCY, "max")))


async def _remove_concurrency(scope: AdminScope, args: Positional) -> Any:
    await scope.core.queue_admin.remove_concurrency(scope.queue)


async def _get_concurrency(scope: AdminScope, args: Positional) -> Any:
    return await scope.core.queues.get(scope.queue).getGlobalConcurrency()


async def _set_rate_limit(scope: AdminScope, args: Positional) -> Any:
    await scope.core.queue_admin.set_rate_limit(
        scope.queue, args.get(0, _field(shapes.RATE_LIMIT, "max")),
        args.get(1, _field(shapes.RATE_LIMIT, "duration")))


async def _remove_rate_limit(scope: AdminScope, args: Positional) -> Any:
    await scope.core.queue_admin.remove_rate_limit(scope.queue)


async def _get_rate_limit(scope: AdminScope, args: Positional) -> Any:
    return await scope.core.queues.get(scope.queue).getGlobalRateLimit()


async def _retry_job(scope: AdminScope, args: Positional) -> Any:
    return await scope.core.job_admin.retry(scope.queue, args.job_id(0))


async def _promote_job(scope: AdminScope, args: Positional) -> Any:
    return await scope.core.job_admin.promote(scope.queue, args.job_id(0))


async def _update_job_data(scope: AdminScope, args: Positional) -> Any:
    if not args.given(1):
        raise invalid("args[1]", "args[1] (the new data, any JSON value) is required")
    return await scope.core.job_admin.update_data(scope.queue, args.job_id(0), args.raw(1))


async def _change_job_priority(scope: AdminScope, args: Positional) -> Any:
    opts = args.options(1, shapes.PRIORITY)
    return await scope.core.job_admin.change_priority(scope.queue, args.job_id(0),
                                                      opts["priority"], opts["lifo"])


async def _change_job_delay(scope: AdminScope, args: Positional) -> Any:
    return await scope.core.job_admin.change_delay(
        scope.queue, args.job_id(0), args.get(1, _field(shapes.CHANGE_DELAY, "delay")))


async def _get_job_dependencies(scope: AdminScope, args: Positional) -> Any:
    page = shapes.PAGE_QUERY["properties"]
    return await scope.core.job_admin.children(
        scope.queue, args.job_id(0), args.get(1, page["start"], 0),
        args.get(2, page["length"], 10))


def _scheduler_id(args: Positional, index: int) -> str:
    return validate_job_id(args.get(index, {"type": "string"}), f"args[{index}]")


async def _get_job_schedulers(scope: AdminScope, args: Positional) -> Any:
    start = args.get(0, _field(shapes.PAGE_QUERY, "start"), 0)
    end = args.get(1, {"type": "integer", "minimum": start,
                       "maximum": start + 999}, start + 99)
    return (await scope.core.schedulers.list(scope.queue, start, end - start + 1))[
        "schedulers"]


async def _get_job_scheduler(scope: AdminScope, args: Positional) -> Any:
    try:
        return await scope.core.schedulers.get(scope.queue, _scheduler_id(args, 0))
    except ProxyError as err:
        if err.kind is NOT_FOUND:
            return None  # as BullMQ's getJobScheduler answers for an unknown id
        raise


async def _get_job_schedulers_count(scope: AdminScope, args: Positional) -> Any:
    return (await scope.core.schedulers.list(scope.queue, 0, 1))["total"]


async def _upsert_job_scheduler(scope: AdminScope, args: Positional) -> Any:
    scheduler_id = _scheduler_id(args, 0)
    repeat = args.get(1, {"type": "object"})
    template = args.get(2, _field(shapes.SCHEDULER, "template"), None)
    spec = {**repeat, **({"template": template} if template is not None else {})}
    spec = checked_scheduler(check(shapes.SCHEDULER, spec, "args[1]"), "args[1]")
    return (await scope.core.schedulers.upsert(scope.queue, scheduler_id, spec))["nextJob"]


async def _remove_job_scheduler(scope: AdminScope, args: Positional) -> Any:
    try:
        await scope.core.schedulers.remove(scope.queue, _scheduler_id(args, 0))
    except ProxyError as err:
        if err.kind is NOT_FOUND:
            return False  # as BullMQ's removeJobScheduler answers for an unknown id
        raise
    return True


@attrs.frozen
class AdminCommand:
    run: Callable[[AdminScope, Positional], Awaitable[Any]]
    arity: int
    right: Right


ADMIN_COMMANDS: Mapping[str, AdminCommand] = {
    "getQueue": AdminCommand(_summary, 0, Right.READ),
    "clean": AdminCommand(_clean, 3, Right.MANAGE),
    "drain": AdminCommand(_drain, 1, Right.MANAGE),
    "obliterate": AdminCommand(_obliterate, 1, Right.MANAGE),
    "retryJobs": AdminCommand(_retry_jobs, 1, Right.MANAGE),
    "promoteJobs": AdminCommand(_promote_jobs, 1, Right.MANAGE),
    "remove": AdminCommand(_remove, 2, Right.MANAGE),
    "setGlobalConcurrency": AdminCommand(_set_concurrency, 1, Right.MANAGE),
    "removeGlobalConcurrency": AdminCommand(_remove_concurrency, 0, Right.MANAGE),
    "getGlobalConcurrency": AdminCommand(_get_concurrency, 0, Right.READ),
    "setGlobalRateLimit": AdminCommand(_set_rate_limit, 2, Right.MANAGE),
    "removeGlobalRateLimit": AdminCommand(_remove_rate_limit, 0, Right.MANAGE),
    "getGlobalRateLimit": AdminCommand(_get_rate_limit, 0, Right.READ),
    "retryJob": AdminCommand(_retry_job, 1, Right.MANAGE),
    "promoteJob": AdminCommand(_promote_job, 1, Right.MANAGE),
    "updateJobData": AdminCommand(_update_job_data, 2, Right.MANAGE),
    "changeJobPriority": AdminCommand(_change_job_priority, 2, Right.MANAGE),
    "changeJobDelay": AdminCommand(_change_job_delay, 2, Right.MANAGE),
    "getJobDependencies": AdminCommand(_get_job_dependencies, 3, Right.READ),
    "getJobSchedulers": AdminCommand(_get_job_schedulers, 2, Right.READ),
    "getJobScheduler": AdminCommand(_get_job_scheduler, 1, Right.READ),
    "getJobSchedulersCount": AdminCommand(_get_job_schedulers_count, 0, Right.READ),
    "upsertJobScheduler": AdminCommand(_upsert_job_scheduler, 3, Right.MANAGE),
    "removeJobScheduler": AdminCommand(_remove_job_scheduler, 1, Right.MANAGE),
}


async def run_admin_command(scope: AdminScope, fn: str, values: list[Any]) -> Any:
    command = ADMIN_COMMANDS[fn]
    return await command.run(scope, Positional(values, command.arity))
