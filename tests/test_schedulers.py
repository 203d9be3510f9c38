"""Job schedulers over REST: create or replace, read, list and remove them, their records
read back from Redis, and their jobs produced on time by a worker."""

from __future__ import annotations

import itertools
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from bullmq import Queue, Worker

from tests.admin_support import rest, until, where
from tests.ws_support import on_asyncio

S = "/queues/mail/schedulers"


def _next_local(hour: int, zone: str) -> int:
    """Epoch ms of the next ``hour``:00 in ``zone`` after now."""
    now = datetime.now(ZoneInfo(zone))
    due = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    if due <= now:
        due += timedelta(days=1)
    return int(due.timestamp() * 1000)


@on_asyncio
async def test_put_creates_a_scheduler_and_its_first_job(proxy, sync_redis):
    start = int(time.time() * 1000) + 600_000
    answer = await rest(proxy, "PUT", f"{S}/tick", {
        "every": 60_000, "startDate": start, "limit": 5,
        "template": {"name": "tick-job", "data": {"n": 1}, "opts": {"attempts": 3}}})
    assert (answer["id"], answer["name"], answer["every"], answer["limit"]) == (
        "tick", "tick-job", 60_000, 5)
    assert answer["next"] == start
    assert answer["template"]["data"] == {"n": 1}
    assert answer["template"]["opts"]["attempts"] == 3
    job = answer["nextJob"]
    assert (job["id"], job["name"], job["data"]) == (f"repeat:tick:{start}", "tick-job",
                                                     {"n": 1})
    assert (job["state"], job["repeatJobKey"]) == ("delayed", "tick")
    assert job == await rest(proxy, "GET", f"/queues/mail/jobs/{job['id']}")
    # In Redis: the scheduler's record, its place in the repeat set, its delayed job.
    assert sync_redis.zscore("bull:mail:repeat", "tick") == start
    assert sync_redis.hget("bull:mail:repeat:tick", "every") == "60000"
    assert where(sync_redis, job["id"]) == ["delayed"]
    assert await rest(proxy, "GET", f"{S}/tick") == {k: v for k, v in answer.items()
                                                      if k != "nextJob"}


@on_asyncio
async def test_put_again_replaces_the_scheduler_and_its_next_job(proxy, sync_redis):
    first = await rest(proxy, "PUT", f"{S}/tick", {"pattern": "0 0 1 1 *"})
    second = await rest(proxy, "PUT", f"{S}/tick", {"pattern": "0 0 1 6 *",
                                                    "template": {"name": "june"}})
    assert second["pattern"] == "0 0 1 6 *"
    assert (await rest(proxy, "GET", S))["total"] == 1
    assert where(sync_redis, first["nextJob"]["id"]) == []
    assert where(sync_redis, second["nextJob"]["id"]) == ["delayed"]
    assert sync_redis.hget(f"bull:mail:{second['nextJob']['id']}", "name") == "june"


@pytest.mark.parametrize("zone", ["Asia/Tokyo", "America/New_York", "UTC"])
@on_asyncio
async def test_a_cron_pattern_runs_in_its_time_zone(proxy, zone):
    answer = await rest(proxy, "PUT", f"{S}/daily", {"pattern": "0 9 * * *", "tz": zone})
    assert (answer["tz"], answer["pattern"]) == (zone, "0 9 * * *")
    assert answer["next"] == _next_local(9, zone)


@on_asyncio
async def test_a_six_field_pattern_has_seconds_first(proxy):
    before = time.time() * 1000
    answer = await rest(proxy, "PUT", f"{S}/often", {"pattern": "*/2 * * * * *"})
    assert answer["next"] % 2000 == 0
    assert before < answer["next"] <= before + 2000


@on_asyncio
async def test_dates_may_be_epoch_ms_or_iso_8601_with_an_offset(proxy):
    answer = await rest(proxy, "PUT", f"{S}/later", {
        "every": 3_600_000, "startDate": "2100-01-01T09:00:00+01:00",
        "endDate": "2100-01-02T00:00:00Z"})
    assert answer["startDate"] == answer["next"] == 4102473600000
    assert answer["endDate"] == 4102531200000


@on_asyncio
async def test_schedulers_are_listed_soonest_first_and_paged(proxy):
    now = int(time.time() * 1000)
    for name, offset in (("c", 3), ("a", 1), ("b", 2)):
        await rest(proxy, "PUT", f"{S}/{name}", {"every": 60_000,
                                                  "startDate": now + offset * 600_000})
    listed = await rest(proxy, "GET", S)
    assert [s["id"] for s in listed["schedulers"]] == ["a", "b", "c"]
    assert (listed["start"], listed["length"], listed["total"]) == (0, 10, 3)
    assert all(s["next"] for s in listed["schedulers"])
    page = await rest(proxy, "GET", f"{S}?start=1&length=1")
    assert ([s["id"] for s in page["schedulers"]], page["total"]) == (["b"], 3)
    assert (await rest(proxy, "GET", "/queues/nope/schedulers"))["schedulers"] == []


@on_asyncio
async def test_delete_removes_the_scheduler_and_its_next_job(proxy, sync_redis):
    created = await rest(proxy, "PUT", f"{S}/tick", {"every": 600_000, "startDate":
                                                     int(time.time() * 1000) + 60_000})
    removed = await rest(proxy, "DELETE", f"{S}/tick")
    assert removed["id"] == "tick"
    assert sync_redis.zcard("bull:mail:repeat") == 0
    assert sync_redis.exists("bull:mail:repeat:tick") == 0
    assert where(sync_redis, created["nextJob"]["id"]) == []
    await rest(proxy, "GET", f"{S}/tick", status=404)
    await rest(proxy, "DELETE", f"{S}/tick", status=404)


@on_asyncio
async def test_a_short_every_produces_jobs_on_time(proxy, sync_redis, redis_url):
    every = 400
    await rest(proxy, "PUT", f"{S}/tick", {"every": every, "template": {"data": {"t": 1}}})
    runs: list[tuple[str, int]] = []

    async def process(job, token):
        runs.append((job.id, int(time.time() * 1000)))
        assert job.data == {"t": 1}

    worker = Worker("mail", process, {"connection": redis_url, "prefix": "bull"})
    try:
        await until(lambda: len(runs) >= 4, "four runs", timeout=30)
    finally:
        await worker.close()
    due = [int(job_id.rsplit(":", 1)[1]) for job_id, _ in runs]
    # One job per slot of `every`, each run no earlier than its slot.
    assert all((later - earlier) % every == 0 and later > earlier
               for earlier, later in itertools.pairwise(due))
    assert all(ran >= slot for (_, ran), slot in zip(runs, due, strict=True))
    assert int(sync_redis.hget("bull:mail:repeat:tick", "ic")) >= 4


@on_asyncio
async def test_bullmqs_get_job_scheduler_still_cannot_read_a_missing_one(redis_url):
    """core/schedulers.py turns this ValueError into a 404; drop that when this fails."""
    queue = Queue("pin", {"connection": redis_url})
    try:
        with pytest.raises(ValueError, match="not enough values to unpack"):
            await queue.getJobScheduler("missing")
    finally:
        await queue.close()
