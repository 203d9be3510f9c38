"""The worker registry: REST routes, the Redis hash and stream, and instances kept in sync."""

from __future__ import annotations

import json

import pytest_twisted

from bullmq_proxy.workers.metadata import parse_metadata
from tests.support import AUTH, aio, make_config, start_proxy
from tests.workers_helpers import eventually

URL = "http://127.0.0.1:9/hook"


def registration(queue="mail", url=URL, **extra):
    return {"queue": queue, "endpoint": {"url": url, "method": "POST"}, **extra}


@pytest_twisted.async_yield_fixture
async def proxy(redis_url):
    running = await start_proxy(make_config(redis_url))
    yield running
    await running.stop()


@pytest_twisted.async_yield_fixture
async def two_proxies(redis_url):
    first = await start_proxy(make_config(redis_url))
    second = await start_proxy(make_config(redis_url))
    yield first, second
    await first.stop()
    await second.stop()


def workers_of(proxy):
    return proxy.services.getServiceNamed("workers")


def running_sha(proxy, queue):
    running = workers_of(proxy).workers.get(queue)
    return running.metadata.sha if running else None


@pytest_twisted.ensureDeferred
async def test_register_stores_the_body_and_announces_it(proxy, sync_redis):
    body = registration(opts={"concurrency": 2})
    status, text, headers = await proxy.request("POST", "/workers", json_body=body, headers=AUTH)
    assert (status, text) == (200, "OK")
    assert headers.getRawHeaders("content-type") == ["text/plain; charset=utf-8"]
    assert json.loads(sync_redis.hget("bmqp:w:meta", "mail")) == body
    entries = sync_redis.xrange("bmpq:w:stream")
    assert [fields for _, fields in entries] == [{"worker": "mail"}]


@pytest_twisted.ensureDeferred
async def test_custom_keys_and_stream_cap(redis_url, sync_redis):
    proxy = await start_proxy(make_config(redis_url, worker_metadata_key="k:meta",
                                          worker_metadata_stream="k:stream",
                                          max_len_worker_metadata_stream=5))
    try:
        metadata = parse_metadata(registration(), proxy.context.config)
        for _ in range(300):
            await aio(workers_of(proxy).store.save(metadata))
        assert sync_redis.hkeys("k:meta") == ["mail"]
        assert sync_redis.exists("bmqp:w:meta") == 0
        # MAXLEN ~ trims whole nodes only, so the cap is approximate (but far below 300).
        assert sync_redis.xlen("k:stream") < 300
    finally:
        await proxy.stop()


@pytest_twisted.ensureDeferred
async def test_invalid_registration_is_400_and_stores_nothing(proxy, sync_redis):
    bad = registration()
    bad["endpoint"]["method"] = "GET"
    status, problem, _ = await proxy.request("POST", "/workers", json_body=bad, headers=AUTH)
    assert status == 400
    assert problem["field"] == "endpoint.method"
    status, problem, _ = await proxy.request("POST", "/workers", body=b"{nope", headers=AUTH)
    assert (status, problem["type"]) == (400, "/problems/invalid-json")
    assert sync_redis.exists("bmqp:w:meta", "bmpq:w:stream") == 0


@pytest_twisted.ensureDeferred
async def test_worker_routes_need_the_api_token(proxy):
    for method, path in (("POST", "/workers"), ("GET", "/workers"),
                         ("GET", "/workers/mail"), ("DELETE", "/workers/mail")):
        status, problem, _ = await proxy.request(method, path, json_body=registration())
        assert (status, problem["type"]) == (401, "/problems/unauthorized"), path


@pytest_twisted.ensureDeferred
async def test_list_get_and_delete(proxy):
    headers = {"Authorization": "Bearer secret", "X-Plain": "visible"}
    body = registration(opts={"concurrency": 3})
    body["endpoint"]["headers"] = headers
    await proxy.request("POST", "/workers", json_body=body, headers=AUTH)
    await proxy.request("POST", "/workers", json_body=registration("other", "https://b.test/"),
                        headers=AUTH)

    status, listed, _ = await proxy.request("GET", "/workers", headers=AUTH)
    assert (status, listed) == (200, {"mail": URL, "other": "https://b.test/"})

    await eventually(lambda: "mail" in workers_of(proxy).workers, what="worker to start")
    status, detail, _ = await proxy.request("GET", "/workers/mail", headers=AUTH)
    assert status == 200
    assert detail["queue"] == "mail"
    assert detail["opts"] == {"concurrency": 3}
    # Only headers that never carry credentials keep their values.
    assert detail["endpoint"]["headers"] == {"Authorization": "[redacted]", "X-Plain": "[redacted]"}
    assert detail["state"]["running"] is True
    assert detail["state"]["inFlight"] == 0
    assert detail["state"]["lastError"] is None

    status, text, _ = await proxy.request("DELETE", "/workers/mail", headers=AUTH)
    assert (status, text) == (200, "OK")
    status, problem, _ = await proxy.request("DELETE", "/workers/mail", headers=AUTH)
    assert (status, problem["type"]) == (404, "/problems/not-found")
    status, problem, _ = await proxy.request("GET", "/workers/mail", headers=AUTH)
    assert status == 404
    status, listed, _ = await proxy.request("GET", "/workers", headers=AUTH)
    assert listed == {"other": "https://b.test/"}
    await eventually(lambda: "mail" not in workers_of(proxy).workers, what="worker to stop")


@pytest_twisted.ensureDeferred
async def test_instances_follow_registrations_and_the_last_one_wins(two_proxies):
    first, second = two_proxies
    await eventually(lambda: workers_of(first).loaded and workers_of(second).loaded)
    await first.request("POST", "/workers", json_body=registration(), headers=AUTH)
    await eventually(lambda: running_sha(second, "mail"), what="second instance to start")

    # Rapid re-registration alternating between the instances; no announcement may be lost.
    last = None
    for index in range(30):
        body = registration(url=f"http://127.0.0.1:9/hook{index}")
        via = first if index % 2 else second
        status, _, _ = await via.request("POST", "/workers", json_body=body, headers=AUTH)
        assert status == 200
        last = parse_metadata(body, first.context.config).sha
    for proxy in (first, second):
        await eventually(lambda p=proxy: running_sha(p, "mail") == last,
                         what="last registration to win")

    await second.request("DELETE", "/workers/mail", headers=AUTH)
    for proxy in (first, second):
        await eventually(lambda p=proxy: running_sha(p, "mail") is None, what="worker removal")


@pytest_twisted.ensureDeferred
async def test_a_new_instance_loads_every_registered_worker(proxy, redis_url):
    for queue in ("alpha", "beta", "gamma"):
        await proxy.request("POST", "/workers", json_body=registration(queue), headers=AUTH)
    late = await start_proxy(make_config(redis_url))
    try:
        await eventually(lambda: workers_of(late).loaded, what="registry to load")
        assert set(workers_of(late).workers) == {"alpha", "beta", "gamma"}
    finally:
        await late.stop()


@pytest_twisted.ensureDeferred
async def test_a_registration_written_around_the_api_cannot_break_the_follower(
        proxy, sync_redis):
    await proxy.request("POST", "/workers", json_body=registration(), headers=AUTH)
    await eventually(lambda: running_sha(proxy, "mail"), what="worker start")
    for raw in ("{broken", json.dumps(registration(url="ftp://x/"))):
        sync_redis.hset("bmqp:w:meta", "mail", raw)
        sync_redis.xadd("bmpq:w:stream", {"worker": "mail"})
        await eventually(lambda: running_sha(proxy, "mail") is None,
                         what="outdated worker to stop")
        await proxy.request("POST", "/workers", json_body=registration(), headers=AUTH)
        await eventually(lambda: running_sha(proxy, "mail"), what="follower to go on")
    sync_redis.xadd("bmpq:w:stream", {"unrelated": "x"})
    await proxy.request("POST", "/workers", json_body=registration("later"), headers=AUTH)
    await eventually(lambda: running_sha(proxy, "later"), what="follower to go on")


@pytest_twisted.ensureDeferred
async def test_the_follower_resyncs_when_announcements_were_trimmed(proxy, sync_redis):
    await proxy.request("POST", "/workers", json_body=registration(), headers=AUTH)
    await eventually(lambda: running_sha(proxy, "mail"), what="worker start")
    # Changes whose announcements the stream cap dropped before this instance read them.
    with sync_redis.pipeline(transaction=True) as pipe:
        pipe.hdel("bmqp:w:meta", "mail")
        pipe.hset("bmqp:w:meta", "fresh", json.dumps(registration("fresh")))
        for _ in range(3):
            pipe.xadd("bmpq:w:stream", {"worker": "noise"})
        pipe.xtrim("bmpq:w:stream", maxlen=1, approximate=False)
        pipe.execute()
    await eventually(lambda: running_sha(proxy, "fresh") and running_sha(proxy, "mail") is None,
                     what="resync after trimming")


@pytest_twisted.ensureDeferred
async def test_the_follower_survives_dropped_connections(proxy, sync_redis):
    await proxy.request("POST", "/workers", json_body=registration(), headers=AUTH)
    await eventually(lambda: running_sha(proxy, "mail"), what="worker start")
    sync_redis.client_kill_filter(_type="normal", skipme=True)
    await proxy.request("POST", "/workers", json_body=registration("after"), headers=AUTH)
    await eventually(lambda: running_sha(proxy, "after"), what="follower after reconnect")


@pytest_twisted.ensureDeferred
async def test_stopped_workers_release_their_redis_connections(proxy, sync_redis):
    async def cycle():
        await proxy.request("POST", "/workers", json_body=registration(), headers=AUTH)
        await eventually(lambda: running_sha(proxy, "mail"), what="worker start")
        await proxy.request("DELETE", "/workers/mail", headers=AUTH)
        await eventually(lambda: running_sha(proxy, "mail") is None, what="worker stop")
        await eventually(lambda: not workers_of(proxy)._closing, what="worker close")

    await cycle()
    baseline = len(sync_redis.client_list())
    for _ in range(5):
        await cycle()
    # A leak would keep at least two connections per cycle; the shared pools may open one
    # more of their own meanwhile.
    assert len(sync_redis.client_list()) <= baseline + 2


@pytest_twisted.ensureDeferred
async def test_without_redis_the_registry_is_not_loaded_and_stopping_still_works():
    from twisted.internet import reactor, task

    proxy = await start_proxy(make_config())  # nothing listens on its Redis port
    await task.deferLater(reactor, 0.5)
    assert workers_of(proxy).loaded is False
    await proxy.stop()


@pytest_twisted.ensureDeferred
async def test_secrets_in_urls_and_headers_are_never_shown(proxy):
    body = registration(url="https://hooks.test/run?apikey=s3cret&team=a")
    body["endpoint"]["headers"] = {"X-Access": "s3cret", "X-Session": "s3cret",
                                   "Content-Type": "application/json"}
    await proxy.request("POST", "/workers", json_body=body, headers=AUTH)
    _, listed, _ = await proxy.request("GET", "/workers", headers=AUTH)
    assert listed["mail"] == "https://hooks.test/run?apikey=[redacted]&team=[redacted]"
    _, detail, _ = await proxy.request("GET", "/workers/mail", headers=AUTH)
    assert detail["endpoint"]["url"] == listed["mail"]
    assert detail["endpoint"]["headers"] == {
        "X-Access": "[redacted]", "X-Session": "[redacted]", "Content-Type": "application/json"}
    await proxy.request("POST", "/queues/mail/jobs", json_body=[{"name": "n", "data": 1}],
                        headers=AUTH)
    _, queue, _ = await proxy.request("GET", "/queues/mail", headers=AUTH)
    assert "s3cret" not in str(queue)
    assert "s3cret" not in str(listed) + str(detail)
