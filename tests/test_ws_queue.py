"""The queue-operations socket and upgrade auth, on a real port against a real Redis."""

from __future__ import annotations

import asyncio
import json

import pytest_twisted

from tests.support import TOKEN, make_config, start_live_proxy
from tests.ws_support import connect, on_asyncio, raw_upgrade


@pytest_twisted.async_yield_fixture
async def live(redis_url):
    running = await start_live_proxy(make_config(redis_url))
    yield running
    await running.stop()


@on_asyncio
async def test_upgrade_without_token_is_401_json_before_handshake(live):
    status, headers, body = await raw_upgrade(live.url, "/ws/queues/mail")
    assert status == 401
    assert headers["content-type"] == "application/problem+json"
    assert headers["www-authenticate"].startswith("Bearer")
    assert json.loads(body)["type"] == "/problems/unauthorized"


@on_asyncio
async def test_upgrade_with_wrong_token_is_401(live):
    status, _, _ = await raw_upgrade(live.url, "/ws/queues/mail?token=nope")
    assert status == 401
    status, _, _ = await raw_upgrade(live.url, "/ws/queues/mail",
                                     {"Authorization": "Bearer nope"})
    assert status == 401


@on_asyncio
async def test_upgrade_with_header_or_query_token_is_101(live):
    status, headers, _ = await raw_upgrade(live.url, f"/ws/queues/mail?token={TOKEN}")
    assert status == 101
    assert headers["upgrade"].lower() == "websocket"
    status, _, _ = await raw_upgrade(live.url, "/ws/queues/mail",
                                     {"Authorization": f"Bearer {TOKEN}"})
    assert status == 101


@on_asyncio
async def test_bad_paths_are_refused_before_handshake(live):
    status, _, body = await raw_upgrade(live.url, f"/ws/queues/ab?token={TOKEN}")
    assert (status, json.loads(body)["field"]) == (400, "queueName")
    status, _, body = await raw_upgrade(live.url, f"/ws/queues/a%3Ab?token={TOKEN}")
    assert (status, json.loads(body)["field"]) == (400, "queueName")
    status, _, body = await raw_upgrade(live.url, f"/ws/queues/mail/process/0?token={TOKEN}")
    assert (status, json.loads(body)["field"]) == (400, "concurrency")
    status, _, _ = await raw_upgrade(live.url, f"/ws/queues/mail/nope?token={TOKEN}")
    assert status == 404
    status, _, body = await raw_upgrade(
        live.url, f"/ws/queues/mail/events?events=bogus&token={TOKEN}")
    assert (status, json.loads(body)["field"]) == (400, "events")


@on_asyncio
async def test_plain_http_request_is_a_json_error(live):
    host, port = live.url.removeprefix("ws://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET /ws/queues/mail?token={TOKEN} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    writer.close()
    assert head.startswith(b"HTTP/1.1 400")
    assert b"application/problem+json" in head


@on_asyncio
async def test_seed_guide_add_frame(live, sync_redis):
    ws = await connect(live.url, "/ws/queues/mail")
    ws.send('{"id": 1, "data": {"fn": "add", "args": ["jobName", { "key": "value" }, '
            '{ "delay": 1000 }]}}')
    reply = await ws.recv()
    assert reply["id"] == 1
    job = reply["data"]["ok"]
    assert (job["name"], job["data"], job["opts"]["delay"]) == ("jobName", {"key": "value"}, 1000)
    assert sync_redis.zcard("bull:mail:delayed") == 1
    await ws.close()


@on_asyncio
async def test_bun_client_frames(live, sync_redis):
    """What clients/bun/src/queue-client.ts sends, undefined arguments as null."""
    ws = await connect(live.url, "/ws/queues/mail")
    added = await ws.call(0, "add", "job-name", {"data": "value"}, None)
    job_id = added["ok"]["id"]
    assert sync_redis.hget(f"bull:mail:{job_id}", "name") == "job-name"
    assert (await ws.call(1, "getJobCounts"))["ok"]["waiting"] == 1
    assert (await ws.call(2, "getJobCounts", "waiting", "failed"))["ok"] == {
        "waiting": 1, "failed": 0}
    jobs = (await ws.call(3, "getJobs", "waiting", 0, 10, False))["ok"]
    assert [j["id"] for j in jobs] == [job_id]
    assert (await ws.call(4, "updateJobProgress", job_id, 42)) == {"ok": None}
    assert (await ws.call(5, "addJobLog", job_id, "a line", None))["ok"] == 1
    assert (await ws.call(6, "getJobLogs", job_id, None, None))["ok"] == {
        "logs": ["a line"], "count": 1}
    assert (await ws.call(7, "pause")) == {"ok": None}
    assert sync_redis.hget("bull:mail:meta", "paused") == "1"
    assert (await ws.call(8, "resume")) == {"ok": None}
    assert sync_redis.hget("bull:mail:meta", "paused") is None
    assert isinstance((await ws.call(9, "getWorkers"))["ok"], list)
    await ws.close()


@on_asyncio
async def test_every_other_command(live, sync_redis):
    ws = await connect(live.url, "/ws/queues/mail")
    bulk = await ws.call(1, "addBulk", [{"name": "a", "data": 1},
                                        {"name": "b", "data": 2, "opts": {"priority": 3}}])
    ids = [job["id"] for job in bulk["ok"]]
    assert len(ids) == 2
    job = (await ws.call(2, "getJob", ids[1]))["ok"]
    assert (job["name"], job["state"], job["opts"]["priority"]) == ("b", "prioritized", 3)
    assert (await ws.call(3, "getJob", "missing-job"))["ok"] is None
    assert (await ws.call(4, "jobProgress", ids[0], {"step": 2}))["ok"] is None
    assert json.loads(sync_redis.hget(f"bull:mail:{ids[0]}", "progress")) == {"step": 2}
    assert (await ws.call(5, "jobLog", ids[0], "x", 1))["ok"] == 1
    await ws.call(6, "add", "tick", {}, {"repeat": {"every": 60000}})
    assert sync_redis.zcard("bull:mail:repeat") == 1
    assert (await ws.call(7, "removeRepeatable", "tick", {"every": 60000}))["ok"] is True
    assert sync_redis.zcard("bull:mail:repeat") == 0
    both = (await ws.call(8, "getJobs", ["waiting", "prioritized"], 0, 5, True))["ok"]
    # The scheduler's first iteration was already waiting; removing the scheduler leaves it.
    assert set(ids) <= {j["id"] for j in both}
    assert {j["name"] for j in both} == {"a", "b", "tick"}
    await ws.close()


@on_asyncio
async def test_invalid_commands_get_err_replies_and_socket_stays_open(live):
    ws = await connect(live.url, "/ws/queues/mail")
    cases = [
        (("nope",), "fn"),
        (("add",), "args[0]"),
        (("add", "", {}), "args[0]"),
        (("add", "n", {}, {"priority": 0}), "args[2].priority"),
        (("add", "n", {}, {"bogus": 1}), "args[2].bogus"),
        (("add", "n", {}, {}, "extra"), "args[3]"),
        (("pause", 1), "args[0]"),
        (("getJobs", "bogus"), "args[0]"),
        (("getJobs", ["waiting", 3]), "args[0][1]"),
        (("getJobs", "waiting", -1), "args[1]"),
        (("getJobs", "waiting", 0, -1), "args[2]"),
        (("getJobs", "waiting", 0, 5000), "args[2]"),
        (("getJobs", "waiting", 0, 5, "yes"), "args[3]"),
        (("getJobCounts", "waiting", "bogus"), "args[1]"),
        (("getJob", 1.5), "args[0]"),
        (("getJobLogs", "a:b"), "args[0]"),
        (("updateJobProgress", "x1", "half"), "args[1]"),
        (("addJobLog", "x1", 5), "args[1]"),
        (("addBulk", {"name": "a"}), "args[0]"),
        (("addBulk", [{"name": "a"}]), "args[0][0].data"),
        (("removeRepeatable", "tick", {"key": 3}), "args[1].key"),
    ]
    for index, ((fn, *args), field) in enumerate(cases):
        data = await ws.call(index, fn, *args)
        assert data["err"]["field"] == field, (fn, args, data)
        assert data["err"]["code"] in ("invalid-field", "unknown-field")
        assert data["err"]["message"]
    assert "ok" in await ws.call(99, "getJobCounts")
    await ws.close()


@on_asyncio
async def test_malformed_frames_get_err_replies(live):
    ws = await connect(live.url, "/ws/queues/mail")
    for frame, field in [
        ("not json", "message"),
        ("[1, 2]", "message"),
        ('{"id": 1.5, "data": {}}', "id"),
        ('{"id": 3, "data": "x"}', "data"),
        ('{"id": 4, "data": {"args": []}}', "fn"),
        ('{"id": 5, "data": {"fn": "add", "args": "x"}}', "args"),
        (b"\xff\xfe", "message"),
    ]:
        ws.send(frame)
        reply = await ws.recv()
        assert reply["data"]["err"]["field"] == field, frame
    ws.send('{"id": "str-id", "data": {"fn": "getJobCounts", "args": []}}')
    assert (await ws.recv())["id"] == "str-id"
    await ws.close()


@on_asyncio
async def test_replies_to_concurrent_commands_match_ids(live, sync_redis):
    ws = await connect(live.url, "/ws/queues/mail")
    for i in range(300):
        ws.send({"id": i, "data": {"fn": "add", "args": ["n", {"i": i}]}})
    replies = [await ws.recv() for _ in range(300)]
    assert sorted(r["id"] for r in replies) == list(range(300))
    failed = [r for r in replies if "ok" not in r["data"]]
    assert not failed, failed[:3]
    assert all(r["data"]["ok"]["data"] == {"i": r["id"]} for r in replies)
    assert sync_redis.llen("bull:mail:wait") == 300
    await ws.close()


@on_asyncio
async def test_many_concurrent_sockets(live, sync_redis):
    sockets = await asyncio.gather(*(connect(live.url, f"/ws/queues/q{i % 5:03d}")
                                     for i in range(50)))
    replies = await asyncio.gather(*(ws.call(i, "add", "n", i) for i, ws in enumerate(sockets)))
    assert all("ok" in reply for reply in replies)
    assert sum(sync_redis.llen(f"bull:q{i:03d}:wait") for i in range(5)) == 50
    for ws in sockets:
        await ws.close()


@on_asyncio
async def test_queue_prefix_applies(redis_url, sync_redis):
    live = await start_live_proxy(make_config(redis_url, queue_prefix="custom"))
    try:
        ws = await connect(live.url, "/ws/queues/mail")
        await ws.call(1, "add", "n", {})
        assert sync_redis.llen("custom:mail:wait") == 1
        await ws.close()
    finally:
        await live.stop_from_asyncio()


@on_asyncio
async def test_binary_json_frames_are_served(live):
    ws = await connect(live.url, "/ws/queues/mail")
    ws.send(b'{"id": 5, "data": {"fn": "getJobCounts", "args": ["waiting"]}}')
    assert (await ws.recv())["data"] == {"ok": {"waiting": 0}}
    await ws.close()


@on_asyncio
async def test_oversize_message_closes_with_1009(redis_url):
    live = await start_live_proxy(make_config(redis_url, max_body_size=1000))
    try:
        ws = await connect(live.url, "/ws/queues/mail")
        ws.send({"id": 1, "data": {"fn": "add", "args": ["n", "x" * 2000]}})
        code, _ = await ws.closed()
        assert code == 1009
    finally:
        await live.stop_from_asyncio()


@on_asyncio
async def test_adds_over_the_socket_are_counted_like_rest_adds(live):
    ws = await connect(live.url, "/ws/queues/mail")
    await ws.call(1, "add", "a", 1, None)
    await ws.call(2, "addBulk", [{"name": "b", "data": 2}, {"name": "c", "data": 3}])
    await ws.call(3, "addBulk", [{"name": "d"}])  # refused: counts nothing
    await ws.close()
    added = live.context.metrics.registry.get_sample_value(
        "bullmq_proxy_jobs_added_total", {"queue": "mail"})
    assert added == 3
