"""Job schedulers (BullMQ's successor of repeatable jobs): create or replace, list, read and
remove the schedulers of a queue."""

from __future__ import annotations

from typing import Any

from croniter import CroniterBadCronError, CroniterBadDateError

from bullmq_proxy.errors import NOT_FOUND, ProxyError, invalid
from bullmq_proxy.jobs import read_job
from bullmq_proxy.queues import QueueRegistry
from bullmq_proxy.validation import validate_job_opts, validate_repeat

# The scheduler fields of BullMQ's RepeatOptions the REST shape accepts besides the template.
REPEAT_FIELDS = ("every", "pattern", "tz", "limit", "startDate", "endDate", "immediately",
                 "offset")


def checked_scheduler(spec: dict[str, Any], field: str = "") -> dict[str, Any]:
    """What the declared shape cannot say, by the rules of a repeating job's ``opts.repeat``
    (cron pattern, time zone, dates) and of an added job's options (the template's)."""
    repeat = {key: value for key, value in spec.items() if key != "template"}
    try:
        validate_repeat(repeat, field or "repeat")
    except ProxyError as err:
        if not field and err.field is not None:
            # The REST body holds the repeat options at its top level.
            err.field = err.field.removeprefix("repeat.")
            err.detail = err.detail.replace("repeat.", "")
        raise
    named = f"{field}.template.opts" if field else "template.opts"
    template = spec.get("template")
    if template and "opts" in template:
        opts = validate_job_opts(template["opts"], named)
        for refused in ("repeat", "jobId", "delay"):
            if refused in opts:
                raise invalid(f"{named}.{refused}", f"{named}.{refused} is set by the scheduler")
    return spec


def _scheduler(record: dict[str, Any]) -> dict[str, Any]:
    """BullMQ's scheduler record with ``id`` named as the REST route names it."""
    rendered = {"id": record.get("key"), **record}
    rendered.pop("key", None)
    return rendered


class Schedulers:
    def __init__(self, queues: QueueRegistry) -> None:
        self._queues = queues

    async def upsert(self, name: str, scheduler_id: str, spec: dict[str, Any]
                     ) -> dict[str, Any]:
        """``spec`` is checked: repeat fields and ``template: {name, data, opts}``."""
        queue = self._queues.get(name)
        template = spec.get("template") or {}
        repeat = {key: spec[key] for key in REPEAT_FIELDS if key in spec}
        try:
            next_job = await queue.upsertJobScheduler(
                scheduler_id, repeat, template.get("name") or scheduler_id,
                template.get("data"), template.get("opts") or {})
        except (CroniterBadCronError, CroniterBadDateError) as err:
            raise invalid("pattern", f"pattern has no next run: {err}") from None
        except ValueError as err:
            # bullmq's own checks (both or neither of every/pattern, immediately with a
            # start date), which the declared shape already refuses: kept as a 400.
            raise invalid("body", str(err)) from None
        if next_job is None:
            # bullmq stores nothing when the end date has passed: its only reason to answer
            # no job for the limits and dates the shape accepts.
            raise invalid("endDate", "endDate has passed: the scheduler would never run")
        record = await self.get(name, scheduler_id)
        # Read back: bullmq answers a Job it built, whose repeatJobKey, timestamp and opts
        # are not all the stored ones.
        return {**record, "nextJob": await read_job(queue, next_job.id)}

    async def list(self, name: str, start: int, length: int) -> dict[str, Any]:
        queue = self._queues.get(name)
        records = await queue.getJobSchedulers(start, start + length - 1, True)
        return {"schedulers": [_scheduler(r) for r in records], "start": start,
                "length": length, "total": await queue.getJobSchedulersCount()}

    async def get(self, name: str, scheduler_id: str) -> dict[str, Any]:
        try:
            record = await self._queues.get(name).getJobScheduler(scheduler_id)
        except ValueError:
            # bullmq 3.4 cannot unpack its script's answer for a missing scheduler (an
            # empty array); tests/test_schedulers.py pins that.
            record = None
        if record is None:
            raise ProxyError(NOT_FOUND, f"Queue {name!r} has no job scheduler "
                                        f"{scheduler_id!r}.", "schedulerId")
        return _scheduler(record)

    async def remove(self, name: str, scheduler_id: str) -> dict[str, Any]:
        record = await self.get(name, scheduler_id)
        # The script answers 0 when it removed the scheduler, 1 when there was none.
        if await self._queues.get(name).removeJobScheduler(scheduler_id) != 0:
            raise ProxyError(NOT_FOUND, f"Queue {name!r} has no job scheduler "
                                        f"{scheduler_id!r}.", "schedulerId")
        return record
