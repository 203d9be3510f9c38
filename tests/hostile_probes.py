"""Hostile probes against a running proxy, counted: how many get a 5xx (or an ``internal``
err), how many are closed without an answer, how many poisoned registrations are stored, how
many jobs are left active by a worker reply. The figures of issue 11 come from here.

    python -m tests.hostile_probes http://127.0.0.1:8080 TOKEN redis://127.0.0.1:6379/0

Safe to point at the first release: it leaves out the registration that exhausts its memory
(concurrency 1e20). The HTTP-channel probes of issue 11 (431, 413 before 100 Continue, slow
headers) are another issue's and not here.
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
from typing import Any
from urllib.parse import quote

import redis
import websockets.asyncio.client

DEEP = b"[" * 1000 + b"]" * 1000
DEEP_OBJECT = b'{"a":' * 1000 + b"1" + b"}" * 1000
HOSTILE_JSON = [DEEP, DEEP_OBJECT, b"1e400", b"[-1e400]", b'"\\ud800"', b'{"a": "\\udfff"}',
                b"[" * 100_000 + b"]" * 100_000]
BIG = [2**64, 10**20, 2**63, 1e20, 10**30]
OPTIONS = ["delay", "attempts", "backoff", "removeOnComplete", "removeOnFail", "priority",
           "keepLogs"]
NESTED_OPTIONS = [("backoff", {"type": "fixed"}, "delay"), ("deduplication", {"id": "d"}, "ttl"),
                  ("repeat", {}, "every"), ("removeOnFail", {}, "count"),
                  ("removeOnComplete", {}, "age")]
LOCK = "probe-lock-token"
QUEUE = "probeq"


def http_probes(token: str) -> list[tuple[str, bytes, bytes, dict[bytes, bytes]]]:
    auth = {b"Authorization": f"Bearer {token}".encode()}
    lock = {b"Authorization": f"Bearer {LOCK}".encode()}
    jobs = f"/queues/{QUEUE}/jobs"
    routes = [(jobs, auth), ("/workers", auth)] + [
        (f"{jobs}/1/{name}", lock) for name in ("progress", "logs", "complete", "fail", "lock")]
    probes = []
    for path, headers in routes:
        for body in HOSTILE_JSON:
            probes.append(("POST", path.encode(), body, headers))
    for option in OPTIONS:
        for value in BIG:
            body = json.dumps([{"name": "a", "data": 1, "opts": {option: value}}]).encode()
            probes.append(("POST", jobs.encode(), body, auth))
    for option, base, key in NESTED_OPTIONS:
        for value in BIG:
            body = json.dumps([{"name": "a", "data": 1,
                                "opts": {option: {**base, key: value}}}]).encode()
            probes.append(("POST", jobs.encode(), body, auth))
    for text in ("\\ud800", "\\udfff", "a\\ud83d"):
        for job in ('[{"name": "%s", "data": 1}]', '[{"name": "a", "data": "%s"}]',
                    '[{"name": "a", "data": {"k": ["%s"]}}]'):
            probes.append(("POST", jobs.encode(), (job % text).encode(), auth))
        probes.append(("POST", f"{jobs}/1/logs".encode(), f'"{text}"'.encode(), lock))
        probes.append(("POST", f"{jobs}/1/fail".encode(), f'{{"reason": "{text}"}}'.encode(),
                       lock))
    for start in (2**60, 2**63 - 1, 2**64, 2**53, -1):
        for path in (jobs, f"{jobs}/1/logs"):
            probes.append(("GET", f"{path}?start={start}&length=10".encode(), b"", auth))
    for duration in ("1e20", str(2**63), str(10**30)):
        probes.append(("POST", f"{jobs}/1/lock".encode(), f'{{"duration": {duration}}}'.encode(),
                       lock))
    for bad in (b"Bearer \xff", b"Bearer \xc3\x28", b"\xff\xfe\xfd", b"Bearer \x80abc"):
        probes.append(("GET", jobs.encode(), b"", {b"Authorization": bad}))
        probes.append(("GET", b"/ws/queues/abc", b"", {b"Authorization": bad,
                                                       b"Upgrade": b"websocket",
                                                       b"Connection": b"Upgrade"}))
    for upgrade in (b"websocket\xff", b"\xffwebsocket", b"websocket\x80"):
        probes.append(("GET", f"/ws/queues/abc?token={token}".encode(), b"",
                       {b"Upgrade": upgrade, b"Connection": b"Upgrade"}))
    for concurrency in ("%C2%B2", "%D9%A3", "%E2%91%A0", "%F0%9D%9F%98"):
        probes.append(("GET", f"/ws/queues/abc/process/{concurrency}?token={token}".encode(),
                       b"", {b"Upgrade": b"websocket", b"Connection": b"Upgrade",
                             b"Sec-WebSocket-Key": b"dGhlIHNhbXBsZSBub25jZQ==",
                             b"Sec-WebSocket-Version": b"13"}))
    return probes


# Registrations that are stored and then break at run time on the first release.
POISONED = [
    {"opts": {"limiter": {"max": 10**20, "duration": 1000}}},
    {"opts": {"limiter": {"max": 10, "duration": 10**20}}},
    {"opts": {"removeOnComplete": 10**20}},
    {"endpoint": {"asyncTimeout": 10**29}},
    {"endpoint": {"url": "http://user:pass@127.0.0.1:9/"}},
    {"opts": {"concurrency": 3000}},
]


def ws_frames() -> list[bytes]:
    frames = list(HOSTILE_JSON)
    calls = [
        ["add", "a", 1e400], ["add", "\ud800", 1], ["add", "a", {"x": "\udfff"}],
        *(["add", "a", 1, {option: value}] for option in OPTIONS for value in (2**64, 1e20)),
        ["getJobs", "waiting", 2**60], ["getJobs", "waiting", 0, 2**63],
        ["getJobLogs", "1", 0, 2**63 - 1], ["getJobLogs", "1", 2**63, 2**64],
        ["addJobLog", "nope", "line"], ["jobLog", "nope", "line", 2**64],
        ["updateJobProgress", "nope", 50], ["jobProgress", "nope", {"a": 1}],
        ["addBulk", [{"name": "a", "data": 1, "opts": {"delay": 2**64}}]],
    ]
    for n, (fn, *args) in enumerate(calls):
        frames.append(json.dumps({"id": n, "data": {"fn": fn, "args": args}}).encode())
    frames.append(b'{"id": 1, "data": {"fn": "add", "args": ["a", ' + DEEP + b"]}}")
    return frames


WORKER_REPLIES = [b'{"id": %d, "data": {"err": "\\ud800"}}',
                  b'{"id": %d, "data": {"result": "\\udfff"}}',
                  b'{"id": %d, "data": {"result": 1e400}}',
                  b'{"id": %d, "data": {"result": ' + DEEP + b"}}"]


async def http(host: str, port: int, method: str, path: bytes, body: bytes,
               headers: dict[bytes, bytes]) -> int | None:
    """The status of the answer, or None when the connection closed without one."""
    reader, writer = await asyncio.open_connection(host, port)
    head = [method.encode() + b" " + path + b" HTTP/1.1", b"Host: probe",
            b"Content-Type: application/json", b"Content-Length: " + str(len(body)).encode()]
    head += [name + b": " + value for name, value in headers.items()]
    writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
    try:
        line = await asyncio.wait_for(reader.readline(), 20)
    except (TimeoutError, ConnectionError):
        line = b""
    finally:
        writer.close()
    parts = line.split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


async def main(base: str, token: str, redis_url: str) -> dict[str, int]:
    host, port = base.removeprefix("http://").split(":")
    ws_base = f"ws://{host}:{port}"
    store = redis.Redis.from_url(redis_url, decode_responses=True)
    counts: collections.Counter[str] = collections.Counter()
    bad: list[str] = []

    # Job 1 of the queue, with a lock token for the job API probes.
    added = await http(host, int(port), "POST", f"/queues/{QUEUE}/jobs".encode(),
                       b'[{"name": "a", "data": 1}]',
                       {b"Authorization": f"Bearer {token}".encode()})
    assert added == 200, added
    store.set(f"bull:{QUEUE}:1:lock", LOCK)
    for method, path, body, headers in http_probes(token):
        status = await http(host, int(port), method, path, body, headers)
        counts["http probes"] += 1
        if status is None or status >= 500:
            kind = "closed without an answer" if status is None else "5xx"
            counts[kind] += 1
            bad.append(f"{kind}: {method} {path[:60]!r} {body[:40]!r} {headers}")

    for n, change in enumerate(POISONED):
        registration: dict[str, Any] = {"queue": f"poison{n}", "endpoint": {
            "url": "http://127.0.0.1:9/", "method": "POST", **change.get("endpoint", {})}}
        if "opts" in change:
            registration["opts"] = change["opts"]
        status = await http(host, int(port), "POST", b"/workers",
                            json.dumps(registration).encode(),
                            {b"Authorization": f"Bearer {token}".encode()})
        counts["registration probes"] += 1
        if status == 200:
            counts["poisoned registrations stored"] += 1
            bad.append(f"stored: {registration}")
        elif status is None or status >= 500:
            counts["5xx"] += 1
        await http(host, int(port), "DELETE", f"/workers/poison{n}".encode(), b"",
                   {b"Authorization": f"Bearer {token}".encode()})

    url = f"{ws_base}/ws/queues/{QUEUE}?token={quote(token)}"
    for frame in ws_frames():
        counts["websocket probes"] += 1
        try:
            async with websockets.asyncio.client.connect(url, max_size=None) as ws:
                await ws.send(frame)
                reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                err = reply.get("data", {}).get("err")
                if err and err.get("code") == "internal":
                    counts["5xx"] += 1
                    bad.append(f"internal: {frame[:80]!r}")
        except (websockets.exceptions.ConnectionClosed, TimeoutError, OSError) as error:
            counts["closed without an answer"] += 1
            bad.append(f"closed: {frame[:80]!r} ({error.__class__.__name__})")

    store.delete(f"bull:{QUEUE}:1:lock")
    worker_url = f"{ws_base}/ws/queues/{QUEUE}w/process/1?token={quote(token)}"
    for reply in WORKER_REPLIES:
        counts["worker reply probes"] += 1
        async with websockets.asyncio.client.connect(worker_url, max_size=None) as ws:
            await http(host, int(port), "POST", f"/queues/{QUEUE}w/jobs".encode(),
                       b'[{"name": "a", "data": 1, "opts": {"attempts": 1}}]',
                       {b"Authorization": f"Bearer {token}".encode()})
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
            job_id = message["data"]["job"]["id"]
            try:
                await ws.send(reply.replace(b"%d", str(message["id"]).encode()))
                await asyncio.wait_for(ws.recv(), 5)
            except (websockets.exceptions.ConnectionClosed, TimeoutError):
                counts["closed without an answer"] += 1
            for _ in range(40):
                if store.zscore(f"bull:{QUEUE}w:failed", job_id) is not None:
                    break
                await asyncio.sleep(0.1)
            else:
                counts["jobs left active"] += 1
                bad.append(f"left active: job {job_id} after {reply[:50]!r}")
    for line in bad:
        print("  " + line[:200])
    return dict(counts)


if __name__ == "__main__":
    figures = asyncio.run(main(*sys.argv[1:4]))
    print(json.dumps(figures, indent=1))
