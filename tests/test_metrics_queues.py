"""Per-queue metrics: depth by state read from Redis for the queues the proxy serves, jobs
completed and failed; build info; and docs/operations.md listing exactly what is exposed."""

from __future__ import annotations

import re

import pytest_twisted
import redis.asyncio as aredis
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, task

from bullmq_proxy.bridge import as_future
from bullmq_proxy.metrics import ENDPOINT_OUTCOMES, build_labels
from bullmq_proxy.queue_depth import CACHE_SECONDS, SEEN_WITHIN_SECONDS, QueueDepth
from bullmq_proxy.queues import QueueRegistry
from tests.support import AUTH, aio, make_config, start_live_proxy
from tests.twistd_process import REPO
from tests.workers_helpers import add_job, eventually, finished, listen_endpoint, ok, register
from tests.ws_support import connect, on_asyncio

DEPTH = "bullmq_proxy_queue_jobs"


@pytest_twisted.async_yield_fixture
async def live(redis_url):
    proxy = await start_live_proxy(make_config(redis_url, queue_cache_size=3))
    yield proxy
    await proxy.stop()


async def scrape(proxy) -> dict:
    status, text, _ = await proxy.request("GET", "/metrics", headers=AUTH)
    assert status == 200
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def depth(scraped: dict) -> dict[str, dict[str, float]]:
    found: dict[str, dict[str, float]] = {}
    for (name, labels), count in scraped.items():
        if name == DEPTH:
            labels = dict(labels)
            found.setdefault(labels["queue"], {})[labels["state"]] = count
    return found


def _advance(clock: task.Clock, seconds: float) -> None:
    clock.advance(seconds)


@pytest_twisted.ensureDeferred
async def test_depth_is_read_per_state_for_used_queues_and_cached(live, sync_redis):
    clock = task.Clock()
    queues = QueueRegistry(live.context.redis, "bull", 3, clock=clock.seconds)
    collector = QueueDepth(queues, lambda: ["worked"], clock.seconds)
    for name in ("mail", "sms"):
        await aio(queues.get(name).add("j", {}))
    await aio(queues.get("mail").add("later", {}, {"delay": 60_000}))
    await aio(collector.read())
    shown = {(sample.labels["queue"], sample.labels["state"]): sample.value
             for family in collector.collect() for sample in family.samples}
    assert shown[("mail", "waiting")] == 1
    assert shown[("mail", "delayed")] == 1
    assert shown[("sms", "waiting")] == 1
    assert shown[("worked", "waiting")] == 0
    assert {state for queue, state in shown if queue == "mail"} == {
        "active", "completed", "delayed", "failed", "prioritized", "waiting",
        "waiting-children"}

    sync_redis.delete("bull:mail:wait")
    await aio(collector.read())  # within the cache period: Redis is not read again
    assert _count(collector, "mail", "waiting") == 1
    _advance(clock, CACHE_SECONDS)
    await aio(collector.read())
    assert _count(collector, "mail", "waiting") == 0

    _advance(clock, SEEN_WITHIN_SECONDS)
    queues.get("sms")
    await aio(collector.read())
    assert {s.labels["queue"] for f in collector.collect() for s in f.samples} == {
        "sms", "worked"}


def _count(collector, queue, state):
    return next(sample.value for family in collector.collect() for sample in family.samples
                if sample.labels == {"queue": queue, "state": state})


def test_the_queues_shown_are_at_most_the_cache_size():
    queues = QueueRegistry(aredis.Redis(), "bull", 3)  # connects on the first command only
    for n in range(50):
        queues.get(f"tried-{n}")
    assert sorted(queues.used_within(3600)) == ["tried-47", "tried-48", "tried-49"]
    queues.get("tried-0", use=False)
    assert "tried-0" not in queues.used_within(3600)


@pytest_twisted.ensureDeferred
async def test_a_scrape_shows_the_served_queues_only(live):
    await add_job(live, "used")
    await live.request("GET", "/queues/looked-at/jobs", headers=AUTH)
    assert (await live.request("GET", "/queues/refused/jobs"))[0] == 401
    shown = depth(await scrape(live))
    assert set(shown) == {"used", "looked-at"}
    assert shown["used"]["waiting"] == 1


@pytest_twisted.ensureDeferred
async def test_a_scrape_without_redis_still_answers_without_depths(redis_url):
    from bullmq_proxy.redis.embedded import free_port

    proxy = await start_live_proxy(make_config(f"redis://127.0.0.1:{free_port()}/0"))
    try:
        await proxy.request("GET", "/queues/mail/jobs", headers=AUTH)
        scraped = await scrape(proxy)
    finally:
        await proxy.stop()
    assert depth(scraped) == {}
    assert ("bullmq_proxy_processes", frozenset()) in scraped


@pytest_twisted.ensureDeferred
async def test_jobs_completed_and_failed_by_http_workers_and_the_job_api(live):
    async def answer(delivery):
        name = delivery.body["job"]["name"]
        if name == "held":
            return 202, {}, b""
        return ok("done") if name == "good" else (422, {}, b"bad job")

    endpoint = listen_endpoint(answer)
    try:
        await register(live, endpoint.url, "mail")
        good = await add_job(live, "mail", name="good")
        bad = await add_job(live, "mail", name="bad")
        held = await add_job(live, "mail", name="held")
        assert (await finished(live, good, "mail"))["state"] == "completed"
        assert (await finished(live, bad, "mail"))["state"] == "failed"
        delivery = await eventually(lambda: next(
            (d.body for d in endpoint.deliveries if d.body["job"]["id"] == held), None),
            what="the held job's call")
        status, _, _ = await live.request(
            "POST", f"/queues/mail/jobs/{held}/complete", json_body={"returnvalue": 1},
            headers={"Authorization": f"Bearer {delivery['token']}"})
        assert status == 200
        assert (await finished(live, held, "mail"))["state"] == "completed"
        scraped = await scrape(live)
    finally:
        await endpoint.close()
    mail = frozenset({("queue", "mail")})
    assert scraped[("bullmq_proxy_jobs_completed_total", mail)] == 2
    assert scraped[("bullmq_proxy_jobs_failed_total", mail)] == 1
    assert depth(scraped)["mail"]["completed"] == 2


@on_asyncio
async def test_jobs_of_websocket_workers_are_counted_and_their_queue_shown(live):
    ws = await connect(live.url, "/ws/queues/pushed/process/1")
    for name in ("ok", "no"):
        await twisted(add_job(live, "pushed", name=name, opts={"attempts": 1}))
    for _ in range(2):
        message = await ws.recv()
        outcome = {"result": 1} if message["data"]["job"]["name"] == "ok" else {"err": "no"}
        ws.send({"id": message["id"], "data": outcome})

    async def counted():  # on Twisted's side, as eventually is
        scraped = await scrape(live)
        done = scraped.get(("bullmq_proxy_jobs_failed_total", frozenset({("queue", "pushed")})))
        return scraped if done == 1 else None

    scraped = await twisted(eventually(counted, what="the two jobs"))
    await ws.close()
    pushed = frozenset({("queue", "pushed")})
    assert scraped[("bullmq_proxy_jobs_completed_total", pushed)] == 1
    assert "pushed" in depth(scraped)


def twisted(coroutine):
    """Await a Twisted-side coroutine from an asyncio test."""
    return as_future(defer.ensureDeferred(coroutine))


def test_build_info_names_the_versions():
    labels = build_labels()
    assert set(labels) == {"version", "python", "twisted", "bullmq"}
    assert all(re.fullmatch(r"\d+\.\d+[\w.]*", value) for value in labels.values()), labels


def _documented() -> dict[str, tuple[str, set[str], str]]:
    """The metrics table of docs/operations.md: name -> (type, labels, meaning)."""
    text = (REPO / "docs" / "operations.md").read_text()
    table = text.split("| metric | type | labels | meaning |", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for line in table.splitlines()[2:]:
        name, kind, labels, meaning = (cell.strip() for cell in line.strip().strip("|").split("|"))
        rows[name.strip("`")] = (kind, set(re.findall(r"`([^`]+)`", labels)), meaning)
    return rows


@pytest_twisted.ensureDeferred
async def test_operations_doc_lists_exactly_the_metrics_exposed(live):
    metrics = live.context.metrics
    await add_job(live, "mail")
    metrics.observe_endpoint_call("mail", "completed", 0.1)
    metrics.jobs_completed.labels("mail").inc()
    metrics.jobs_failed.labels("mail").inc()
    metrics.redis_command_errors.labels("timeout").inc()
    status, text, _ = await live.request("GET", "/metrics", headers=AUTH)
    assert status == 200
    exposed = {}
    for family in text_string_to_metric_families(text):
        name = family.name + ("_total" if family.type == "counter" else "")
        # Gauges of live state (jobs in flight, sockets) have no series with nothing running.
        labels = {key for sample in family.samples for key in sample.labels} - {"le"} \
            if family.samples else None
        exposed[name] = (family.type, labels)
    documented = _documented()
    assert set(documented) == set(exposed)
    for name, (kind, labels) in exposed.items():
        assert documented[name][0] == kind, name
        assert labels is None or documented[name][1] == labels, name
    meaning = documented["bullmq_proxy_endpoint_calls_total"][2]
    outcomes = meaning.split("`outcome` is ", 1)[1]
    assert set(re.findall(r"`([a-z_]+)`", outcomes)) == set(ENDPOINT_OUTCOMES)


@pytest_twisted.ensureDeferred
async def test_per_queue_series_stay_bounded_whatever_names_clients_try(redis_url):
    from tests.support import start_proxy

    proxy = await start_proxy(make_config(redis_url, queue_cache_size=10))
    try:
        for n in range(30):
            await proxy.request("POST", f"/queues/tried-{n:02d}/jobs",
                                json_body=[{"name": "n", "data": n}], headers=AUTH)
        status, text, _ = await proxy.request("GET", "/metrics", headers=AUTH)
        assert status == 200
        labelled = {line.split('queue="')[1].split('"')[0] for line in text.splitlines()
                    if line.startswith("bullmq_proxy_jobs_added_total{")}
        assert len(labelled) <= 10
        assert labelled <= {f"tried-{n:02d}" for n in range(20, 30)}
    finally:
        await proxy.stop()
