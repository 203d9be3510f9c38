"""REST adapters of job schedulers."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bullmq_proxy.core.schedulers import Schedulers, check_pattern
from bullmq_proxy.errors import invalid
from bullmq_proxy.http.router import Call, Route
from bullmq_proxy.schemas import admin as shapes
from bullmq_proxy.validation import validate_job_id, validate_job_opts


def _epoch_ms(date: int | str) -> float:
    """A date as the shape accepts it (epoch ms, or ISO 8601 with an offset) in epoch ms."""
    if isinstance(date, int):
        return date
    return datetime.fromisoformat(date).timestamp() * 1000


def checked_scheduler(spec: dict[str, Any], field: str = "") -> dict[str, Any]:
    """What the declared shape cannot say: a cron pattern, a time zone, a job template's
    options (the same rules as an added job's)."""
    def named(key: str) -> str:
        return f"{field}.{key}" if field else key

    if "pattern" in spec:
        check_pattern(spec["pattern"], named("pattern"))
    if "tz" in spec:
        try:
            ZoneInfo(spec["tz"])
        except (ZoneInfoNotFoundError, ValueError):
            raise invalid(named("tz"), f"{named('tz')} is not a known time zone: "
                                       f"{spec['tz']!r}") from None
    if spec.get("immediately") and "startDate" in spec:
        raise invalid(named("immediately"), f"{named('immediately')} and "
                                            f"{named('startDate')} exclude each other")
    if "startDate" in spec and "endDate" in spec and (
            _epoch_ms(spec["endDate"]) <= _epoch_ms(spec["startDate"])):
        raise invalid(named("endDate"), f"{named('endDate')} must come after "
                                        f"{named('startDate')}")
    template = spec.get("template")
    if template and "opts" in template:
        opts = validate_job_opts(template["opts"], named("template.opts"))
        for refused in ("repeat", "jobId", "delay"):
            if refused in opts:
                raise invalid(named(f"template.opts.{refused}"),
                              f"{named(f'template.opts.{refused}')} is set by the scheduler")
    return spec


def scheduler_routes(schedulers: Schedulers) -> list[Route]:
    base = "/queues/{queueName}/schedulers"
    one = base + "/{schedulerId}"

    def ids(call: Call) -> tuple[str, str]:
        return (call.params["queueName"],
                validate_job_id(call.params["schedulerId"], "schedulerId"))

    async def upsert(call: Call) -> Any:
        return await schedulers.upsert(*ids(call), checked_scheduler(call.data))

    async def listed(call: Call) -> Any:
        return await schedulers.list(call.params["queueName"], call.args["start"],
                                     call.args["length"])

    async def get(call: Call) -> Any:
        return await schedulers.get(*ids(call))

    async def remove(call: Call) -> Any:
        return await schedulers.remove(*ids(call))

    return [
        Route(b"GET", base, listed, query=shapes.PAGE_QUERY,
              summary="A queue's job schedulers, soonest first"),
        Route(b"PUT", one, upsert, body=shapes.SCHEDULER,
              summary="Create or replace a job scheduler"),
        Route(b"GET", one, get, summary="A job scheduler with its next run time"),
        Route(b"DELETE", one, remove, summary="Remove a job scheduler"),
    ]
