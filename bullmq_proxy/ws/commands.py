"""The queue-socket commands: an explicit table, never a method looked up by name.

Each command checks its arguments (``null`` stands for an omitted optional argument, as
JavaScript clients send ``undefined``) and raises ``ProxyError`` naming ``args[i]``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
from bullmq import Queue

from bullmq_proxy.bounds import COUNT, INDEX, MAX_JOBS_PER_CALL, Range
from bullmq_proxy.core import Core
from bullmq_proxy.core.adding import BulkAdd, add_jobs
from bullmq_proxy.errors import invalid
from bullmq_proxy.job_updates import JobUpdates
from bullmq_proxy.jobs import job_json, read_job
from bullmq_proxy.redis.layout import job_types
from bullmq_proxy.rights import Right
from bullmq_proxy.validation import (
    JOB_STATES,
    is_integer,
    new_job,
    require_in,
    require_object,
    validate_job,
    validate_job_id,
    validate_job_opts,
)
from bullmq_proxy.ws.admin import ADMIN_COMMANDS, AdminCommand, AdminScope, run_admin_command
from bullmq_proxy.ws.session import Admission

# getJobLogs reads to the end with -1, as BullMQ's does.
LOG_END = Range(-1, INDEX.maximum)


@attrs.frozen
class Scope:
    """What a command acts on: the socket's queue (by name and as a bullmq Queue), the shared
    add pipeline, job updates, the count of jobs added to the queue (the same metric REST
    adds feed), how to read the queue's Redis layout (5 or 6), and the core."""

    name: str
    queue: Queue
    bulk: BulkAdd
    updates: JobUpdates
    added: Callable[[int], None]
    layout: Callable[[], Awaitable[int]]
    core: Core
    admission: Admission | None = None


class Args:
    """Positional arguments of one call, read with the field name ``args[i]``."""

    def __init__(self, values: list[Any], arity: int) -> None:
        if len(values) > arity:
            raise invalid(f"args[{arity}]", f"this command takes at most {arity} arguments")
        self._values = values

    def field(self, index: int) -> str:
        return f"args[{index}]"

    def given(self, index: int) -> bool:
        return index < len(self._values) and self._values[index] is not None

    def raw(self, index: int) -> Any:
        return self._values[index] if index < len(self._values) else None

    def rest(self) -> list[Any]:
        return self._values

    def text(self, index: int) -> str:
        value = self.raw(index)
        if not isinstance(value, str) or not value:
            raise invalid(self.field(index), f"{self.field(index)} must be a non-empty string")
        return value

    def job_id(self, index: int) -> str:
        value = self.raw(index)
        if is_integer(value) and value > 0:
            value = str(value)
        if isinstance(value, str) and value.isdigit():
            return value  # BullMQ's own ids are accepted when reading a job
        return validate_job_id(value, self.field(index))

    def integer(self, index: int, default: int, bound: Range) -> int:
        if not self.given(index):
            return default
        return require_in(self.raw(index), self.field(index), bound)

    def boolean(self, index: int, default: bool) -> bool:
        if not self.given(index):
            return default
        value = self.raw(index)
        if not isinstance(value, bool):
            raise invalid(self.field(index), f"{self.field(index)} must be a boolean")
        return value


def _states(values: list[Any], field: Callable[[int], str]) -> list[str]:
    for index, state in enumerate(values):
        if state not in JOB_STATES:
            raise invalid(field(index), f"{field(index)} must be one of {', '.join(JOB_STATES)}")
    return list(dict.fromkeys(values))


async def add(scope: Scope, args: Args) -> Any:
    name = args.text(0)
    opts = validate_job_opts(args.raw(2), "args[2]") if args.given(2) else {}
    (added,) = await add_jobs(scope.queue, [new_job(name, args.raw(1), opts, "args[1]")],
                              scope.bulk)
    scope.added(1)
    return added


async def add_bulk(scope: Scope, args: Args) -> Any:
    jobs = args.raw(0)
    if not isinstance(jobs, list):
        raise invalid("args[0]", "args[0] must be a JSON array of {name, data, opts}")
    added = await add_jobs(
        scope.queue, [validate_job(job, f"args[0][{i}]") for i, job in enumerate(jobs)],
        scope.bulk)
    scope.added(len(added))
    return added


async def pause(scope: Scope, args: Args) -> Any:
    await scope.queue.pause()


async def resume(scope: Scope, args: Args) -> Any:
    await scope.queue.resume()


async def get_jobs(scope: Scope, args: Args) -> Any:
    types = args.raw(0)
    if isinstance(types, str):
        states = _states([types], lambda _: "args[0]")
    elif isinstance(types, list) and types:
        states = _states(types, lambda i: f"args[0][{i}]")
    else:
        raise invalid("args[0]", "args[0] must be a job state or a non-empty array of them")
    start = args.integer(1, 0, INDEX)
    end = args.integer(2, start + MAX_JOBS_PER_CALL - 1, Range(start, INDEX.maximum))
    if end - start + 1 > MAX_JOBS_PER_CALL:
        raise invalid("args[2]", f"getJobs returns at most {MAX_JOBS_PER_CALL} jobs per call; "
                                 "narrow start..end")
    asc = args.boolean(3, False)
    jobs = await scope.queue.getJobs(job_types(states, await scope.layout()), start, end, asc)
    return [job_json(job) for job in jobs]


async def get_job_counts(scope: Scope, args: Args) -> Any:
    states = _states(args.rest(), args.field)
    return await scope.queue.getJobCounts(*job_types(states, await scope.layout()))


async def get_job_logs(scope: Scope, args: Args) -> Any:
    return await scope.queue.getJobLogs(
        args.job_id(0), args.integer(1, 0, INDEX), args.integer(2, -1, LOG_END),
        args.boolean(3, True)
    )


async def get_workers(scope: Scope, args: Args) -> Any:
    return await scope.queue.get_workers()


async def get_job(scope: Scope, args: Args) -> Any:
    return await read_job(scope.queue, args.job_id(0))


async def update_job_progress(scope: Scope, args: Args) -> Any:
    job_id = args.job_id(0)
    progress = args.raw(1)
    if isinstance(progress, bool) or not isinstance(progress, int | float | dict):
        raise invalid("args[1]", "args[1] must be a number or a JSON object")
    await scope.updates.update_progress(scope.name, job_id, progress)


async def add_job_log(scope: Scope, args: Args) -> Any:
    job_id = args.job_id(0)
    row = args.raw(1)
    if not isinstance(row, str):
        raise invalid("args[1]", "args[1] must be a string")
    return await scope.updates.add_log(scope.name, job_id, row, args.integer(2, 0, COUNT))


async def remove_repeatable(scope: Scope, args: Args) -> Any:
    """``removeRepeatable(name, repeatOpts)``: repeatable jobs are job schedulers keyed by
    ``repeat.key`` or, without one, by the job name (as ``add`` creates them)."""
    key = args.text(0)
    if args.given(1):
        repeat = require_object(args.raw(1), "args[1]")
        if repeat.get("key") is not None:
            key = repeat["key"]
            if not isinstance(key, str) or not key:
                raise invalid("args[1].key", "args[1].key must be a non-empty string")
    # The script answers 0 when it removed the scheduler, 1 when there was none.
    return await scope.queue.removeJobScheduler(key) == 0


@attrs.frozen
class Command:
    run: Callable[[Scope, Args], Awaitable[Any]]
    arity: int
    right: Right


COMMANDS: Mapping[str, Command] = {
    "add": Command(add, 3, Right.WRITE),
    "addBulk": Command(add_bulk, 1, Right.WRITE),
    "pause": Command(pause, 0, Right.MANAGE),
    "resume": Command(resume, 0, Right.MANAGE),
    "getJobs": Command(get_jobs, 4, Right.READ),
    "getJobCounts": Command(get_job_counts, len(JOB_STATES), Right.READ),
    "getJobLogs": Command(get_job_logs, 4, Right.READ),
    "getWorkers": Command(get_workers, 0, Right.READ),
    "getJob": Command(get_job, 1, Right.READ),
    "updateJobProgress": Command(update_job_progress, 2, Right.WORKERS),
    "jobProgress": Command(update_job_progress, 2, Right.WORKERS),
    "addJobLog": Command(add_job_log, 3, Right.WORKERS),
    "jobLog": Command(add_job_log, 3, Right.WORKERS),
    "removeRepeatable": Command(remove_repeatable, 3, Right.MANAGE),
}


async def run_command(scope: Scope, fn: str, values: list[Any]) -> Any:
    command: Command | AdminCommand | None = COMMANDS.get(fn) or ADMIN_COMMANDS.get(fn)
    if command is None:
        known = ", ".join([*COMMANDS, *ADMIN_COMMANDS])
        raise invalid("fn", f"unknown command {fn!r}; known: {known}")
    if scope.admission is not None:
        # Read at each command: a token-file reload may have changed the token's rights.
        scope.admission.principal.require(command.right, scope.name)
    if isinstance(command, AdminCommand):
        return await run_admin_command(AdminScope(scope.name, scope.core), fn, values)
    return await command.run(scope, Args(values, command.arity))
