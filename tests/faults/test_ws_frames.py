"""Random, truncated, binary and oversize WebSocket frames: each gets an err reply or a
clean close, never a dropped socket or an internal error, and the socket keeps serving."""

from __future__ import annotations

import json
import random

import pytest
import pytest_twisted
from websockets.exceptions import ConnectionClosed

from tests.support import make_config, start_live_proxy
from tests.ws_support import connect, on_asyncio

pytestmark = pytest.mark.slow
Q = "frames"
SEED = 20261201


@pytest_twisted.async_yield_fixture
async def live(redis_url):
    proxy = await start_live_proxy(make_config(redis_url, max_body_size=64 * 1024))
    yield proxy
    await proxy.stop()


def frames(count: int) -> list[str | bytes]:
    """Frames a careless or hostile client sends: garbage, cut-off JSON, wrong shapes."""
    chance = random.Random(SEED)
    good = json.dumps({"id": 7, "data": {"fn": "getJobCounts", "args": ["waiting"]}})
    made: list[str | bytes] = []
    for _ in range(count):
        kind = chance.randrange(6)
        if kind == 0:
            made.append(bytes(chance.randrange(256) for _ in range(chance.randrange(1, 64))))
        elif kind == 1:
            made.append(good[:chance.randrange(1, len(good))])
        elif kind == 2:
            made.append("".join(chr(chance.randrange(1, 0x2FFF)) for _ in range(20)))
        elif kind == 3:
            made.append(json.dumps(chance.choice([[], 1, None, "x", {"id": {}, "data": 1},
                                                  {"data": {"fn": 3}}])))
        elif kind == 4:
            made.append(json.dumps({"id": 1, "data": {"fn": "add", "args": [
                "n", {"deep": "x" * chance.randrange(10)}, {"delay": chance.randrange(-5, 5)}]}}))
        else:
            made.append(good.encode())  # a binary frame holding JSON is served too
    return made


@pytest.mark.parametrize("path", [f"/ws/queues/{Q}", f"/ws/queues/{Q}/events"])
@on_asyncio
async def test_garbage_frames_get_err_replies_and_the_socket_keeps_serving(live, path):
    ws = await connect(live.url, path)
    for frame in frames(60):
        ws.send(frame)
        reply = await ws.recv()
        data = reply["data"]
        assert "ok" in data or data.get("err", {}).get("code") != "internal", (frame, reply)
    if path.endswith("/events"):
        assert "ok" in (await ws.call(9, "on", "completed"))
    else:
        assert "ok" in (await ws.call(9, "getJobCounts", "waiting"))
    await ws.close()


@on_asyncio
async def test_an_oversize_message_closes_the_socket_cleanly(live):
    ws = await connect(live.url, f"/ws/queues/{Q}")
    ws.send(json.dumps({"id": 1, "data": {"fn": "add", "args": ["n", "x" * 100_000]}}))
    with pytest.raises(ConnectionClosed):
        await ws.recv()
    code, _ = await ws.closed()
    assert code in (1009, 4413)
    # The proxy goes on serving others.
    other = await connect(live.url, f"/ws/queues/{Q}")
    assert "ok" in await other.call(1, "getJobCounts")
    await other.close()


@on_asyncio
async def test_a_worker_socket_survives_garbage_replies(live):
    worker = await connect(live.url, f"/ws/queues/{Q}/process/1")
    for frame in frames(30):
        worker.send(frame)
    queue = await connect(live.url, f"/ws/queues/{Q}")
    added = (await queue.call(1, "add", "n", {}))["ok"]
    while True:
        message = await worker.recv()
        if message["data"].get("type") == "process":
            break
    assert message["data"]["job"]["id"] == added["id"]
    worker.send({"id": message["id"], "data": {"result": "fine"}})
    await queue.close()
    await worker.close()
