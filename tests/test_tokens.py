"""Scoped tokens: the token file, rights and queue scopes at the one auth place, per-token
rates, and the command that creates a token."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
import pytest_twisted
from twisted.internet import task
from websockets.exceptions import InvalidStatus

from bullmq_proxy.config import ConfigError
from bullmq_proxy.redis.embedded import free_port
from bullmq_proxy.rights import Principal, Rate, RateLimiter, Right
from bullmq_proxy.tokens import TokenFile, digest, parse_token_file
from tests.support import AUTH, make_config, start_live_proxy, start_proxy
from tests.twistd_process import proxy_env, start_twistd
from tests.ws_support import connect, on_asyncio

READER, WRITER, MANAGER = "reader-token", "writer-token", "manager-token"


def token_file(tmp_path, entries, name="tokens.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"tokens": entries}))
    return str(path)


def entry(name, token, queues, rights, rate=None):
    found = {"name": name, "sha256": digest(token), "queues": queues, "rights": rights}
    if rate:
        found["rate"] = rate
    return found


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest_twisted.async_yield_fixture
async def scoped(redis_url, tmp_path):
    path = token_file(tmp_path, [
        entry("reports", READER, ["mail-*"], ["read"]),
        entry("producer", WRITER, ["mail-*", "sms"], ["write"]),
        entry("ops", MANAGER, ["*"], ["manage", "read"], {"per_second": 1, "burst": 3}),
    ])
    proxy = await start_proxy(make_config(redis_url, tokens_file=path))
    yield proxy
    await proxy.stop()


@pytest_twisted.ensureDeferred
async def test_each_right_opens_its_routes_on_its_queues_only(scoped):
    r = scoped.request
    job = [{"name": "n", "data": 1}]
    assert (await r("POST", "/queues/mail-in/jobs", json_body=job, headers=bearer(WRITER)))[0] \
        == 200
    assert (await r("POST", "/queues/sms/jobs", json_body=job, headers=bearer(WRITER)))[0] == 200
    status, problem, _ = await r("POST", "/queues/push/jobs", json_body=job,
                                 headers=bearer(WRITER))
    assert (status, problem["queue"], problem["right"]) == (403, "push", "write")
    status, problem, _ = await r("GET", "/queues/mail-in/jobs", headers=bearer(WRITER))
    assert (status, problem["type"], problem["right"]) == (403, "/problems/forbidden", "read")
    assert (await r("GET", "/queues/mail-in/jobs", headers=bearer(READER)))[0] == 200
    assert (await r("POST", "/queues/mail-in/pause", headers=bearer(READER)))[0] == 403
    assert (await r("POST", "/queues/mail-in/pause", headers=bearer(MANAGER)))[0] == 200
    # Workers and metrics need their own rights (admin holds every right).
    assert (await r("GET", "/workers", headers=bearer(MANAGER)))[0] == 403
    assert (await r("GET", "/metrics", headers=bearer(READER)))[0] == 403
    assert (await r("GET", "/metrics", headers=AUTH))[0] == 200


@pytest_twisted.ensureDeferred
async def test_listing_queues_shows_only_the_readable_ones(scoped):
    for queue in ("mail-a", "mail-b", "sms"):
        await scoped.request("POST", f"/queues/{queue}/jobs", json_body=[{"name": "n",
                                                                        "data": 1}],
                             headers=AUTH)
    _, listed, _ = await scoped.request("GET", "/queues", headers=bearer(READER))
    assert [q["name"] for q in listed["queues"]] == ["mail-a", "mail-b"]
    _, listed, _ = await scoped.request("GET", "/queues", headers=AUTH)
    assert [q["name"] for q in listed["queues"]] == ["mail-a", "mail-b", "sms"]


@pytest_twisted.ensureDeferred
async def test_a_flow_needs_write_on_every_queue_it_adds_to(scoped):
    flow = {"name": "p", "queueName": "mail-p", "data": {}, "children": [
        {"name": "c", "queueName": "push", "data": {}}]}
    status, problem, _ = await scoped.request("POST", "/flows", json_body=flow,
                                              headers=bearer(WRITER))
    assert (status, problem["queue"]) == (403, "push")
    flow["children"][0]["queueName"] = "sms"
    assert (await scoped.request("POST", "/flows", json_body=flow,
                                 headers=bearer(WRITER)))[0] == 200


@pytest_twisted.ensureDeferred
async def test_a_token_over_its_rate_gets_429_with_retry_after(scoped):
    answers = [await scoped.request("GET", "/queues/x1x/jobs", headers=bearer(MANAGER))
               for _ in range(4)]
    assert [status for status, _, _ in answers] == [200, 200, 200, 429]
    _, problem, headers = answers[-1]
    assert problem["type"] == "/problems/rate-limited"
    assert headers.getRawHeaders("retry-after") == ["1"]
    _, text, _ = await scoped.request("GET", "/metrics", headers=AUTH)
    assert 'bullmq_proxy_rate_limited_total{token="ops"} 1.0' in text
    assert MANAGER not in text


@pytest_twisted.ensureDeferred
async def test_without_a_token_nothing_about_routes_or_bodies_is_told(scoped):
    for method, path, body in (("GET", "/no/such/route", None),
                               ("DELETE", "/queues/mail/jobs", None),
                               ("POST", "/queues/a:b/jobs", b"{not json"),
                               ("POST", "/queues/mail/jobs", b"[1]")):
        status, problem, _ = await scoped.request(method, path, body=body)
        assert (status, problem["type"]) == (401, "/problems/unauthorized"), (method, path)
    # Public routes stay public, their wrong methods included.
    assert (await scoped.request("GET", "/healthz"))[0] == 200
    assert (await scoped.request("POST", "/healthz", body=b"{}"))[0] == 405


def test_the_rate_limiter_refills_with_its_clock():
    clock = task.Clock()
    limiter = RateLimiter(clock.seconds, Rate(2, 2))
    principal = Principal("p")
    limiter.take(principal)
    limiter.take(principal)
    with pytest.raises(Exception, match="rate"):
        limiter.take(principal)
    clock.advance(0.5)
    limiter.take(principal)


def test_principals_match_queue_globs_and_admin_holds_every_right():
    scoped = Principal("s", ("mail-*", "sms"), frozenset({Right.READ}))
    assert scoped.may(Right.READ, "mail-x")
    assert not scoped.may(Right.READ, "mailx")
    assert not scoped.may(Right.WRITE, "sms")
    admin = Principal("a", ("*",), frozenset({Right.ADMIN}))
    assert admin.may(Right.WORKERS, "anything")
    wide = Principal("w", ("mail-*", "*"), frozenset({Right.READ}))
    for name in ("mailx", "a b/c:d\ne", "[x]", "ü"):
        assert wide.covers(name)
        assert admin.covers(name)
        assert not scoped.covers(name)


@pytest.mark.parametrize(("raw", "message"), [
    ({"tokens": [{"name": "a", "sha256": "zz", "queues": ["*"], "rights": ["read"]}]},
     "sha256"),
    ({"tokens": [{"name": "a", "sha256": "0" * 64, "queues": [], "rights": ["read"]}]},
     "queues"),
    ({"tokens": [{"name": "a", "sha256": "0" * 64, "queues": ["*"], "rights": ["root"]}]},
     "rights"),
    ({"tokens": [{"name": "a", "sha256": "0" * 64, "queues": ["*"], "rights": ["read"],
                  "rate": {"per_second": 0, "burst": 1}}]}, "rate"),
    ({"tokens": [{"name": "a", "sha256": "0" * 64, "queues": ["*"], "rights": ["read"],
                  "extra": 1}]}, "unknown fields"),
    ({"tokens": [entry("a", "x", ["*"], ["read"]), entry("a", "y", ["*"], ["read"])]},
     "twice"),
    ({"tokenz": []}, "tokens"),
])
def test_a_bad_token_file_stops_the_start_naming_what_is_wrong(tmp_path, raw, message):
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match=message):
        TokenFile(make_config(tokens_file=str(path)))


def test_toml_mirrors_json(tmp_path):
    path = tmp_path / "tokens.toml"
    path.write_text(f'''
[[tokens]]
name = "reports"
sha256 = "{digest("t")}"
queues = ["mail-*"]
rights = ["read"]
[tokens.rate]
per_second = 50
burst = 100
''')
    (principal,) = parse_token_file(str(path)).values()
    assert principal == Principal("reports", ("mail-*",), frozenset({Right.READ}), Rate(50, 100))


def test_reload_keeps_the_old_tokens_when_the_new_file_is_broken(tmp_path):
    path = token_file(tmp_path, [entry("a", "one", ["*"], ["read"])])
    tokens = TokenFile(make_config(tokens_file=path))
    assert tokens.authenticate("one")
    (tmp_path / "tokens.json").write_text(json.dumps({"tokens": [
        entry("b", "two", ["*"], ["read"])]}))
    assert tokens.reload()
    assert not tokens.authenticate("one")
    assert tokens.authenticate("two").name == "b"
    (tmp_path / "tokens.json").write_text("{broken")
    assert not tokens.reload()
    assert tokens.authenticate("two").name == "b"


@pytest.mark.parametrize("suffix", ["json", "toml"])
def test_create_token_prints_it_once_and_stores_only_its_digest(tmp_path, suffix):
    path = tmp_path / f"tokens.{suffix}"
    run = subprocess.run(
        [sys.executable, "-m", "bullmq_proxy.tokens", "create", "mailer", "--queues",
         "mail-*,sms", "--rights", "read,write", "--rate", "5/10", "--file", str(path)],
        capture_output=True, text=True, check=True)
    token = run.stdout.strip()
    assert len(token) >= 43  # 256 random bits
    assert token not in path.read_text()
    (principal,) = parse_token_file(str(path)).values()
    assert principal == Principal("mailer", ("mail-*", "sms"),
                                  frozenset({Right.READ, Right.WRITE}), Rate(5, 10))
    assert TokenFile(make_config(tokens_file=str(path))).authenticate(token) == principal
    again = subprocess.run(
        [sys.executable, "-m", "bullmq_proxy.tokens", "create", "mailer", "--queues", "*",
         "--rights", "read", "--file", str(path)], capture_output=True, text=True)
    assert again.returncode != 0
    assert "already has a token named 'mailer'" in again.stderr


@pytest_twisted.async_yield_fixture
async def scoped_live(redis_url, tmp_path):
    path = token_file(tmp_path, [
        entry("reports", READER, ["mail-*"], ["read"]),
        entry("producer", WRITER, ["mail-*"], ["write"]),
    ])
    proxy = await start_live_proxy(make_config(redis_url, tokens_file=path))
    yield proxy
    await proxy.stop()


@on_asyncio
async def test_websocket_upgrades_and_commands_check_rights(scoped_live):
    for path in ("/ws/queues/mail-a/process/1", "/ws/queues/other/events", "/ws/queues/other"):
        with pytest.raises(InvalidStatus) as refused:
            await connect(scoped_live.url, path, token=READER)
        assert refused.value.response.status_code == 403, path
    events = await connect(scoped_live.url, "/ws/queues/mail-a/events", token=READER)
    await events.close()
    writer = await connect(scoped_live.url, "/ws/queues/mail-a", token=WRITER)
    assert "ok" in await writer.call(1, "add", "n", {})
    denied = (await writer.call(2, "getJobCounts"))["err"]
    assert (denied["code"], denied["right"]) == ("forbidden", "read")
    assert (await writer.call(3, "drain"))["err"]["right"] == "manage"
    await writer.close()
    reader = await connect(scoped_live.url, "/ws/queues/mail-a", token=READER)
    assert (await reader.call(1, "getJobCounts", "waiting"))["ok"] == {"waiting": 1}
    assert (await reader.call(2, "add", "n", {}))["err"]["right"] == "write"
    await reader.close()


@pytest.mark.slow
@on_asyncio
async def test_sighup_rereads_the_token_file_without_dropping_connections(redis_url, tmp_path):
    path = token_file(tmp_path, [entry("old", "old-token", ["*"], ["read", "write"]),
                                 entry("kept", "kept-token", ["*"], ["read"])])
    port = free_port()
    env = proxy_env(REDIS_URL=redis_url, AUTH_TOKENS="full", TOKENS_FILE=path)
    proxy = start_twistd([], env, tmp_path, port)

    try:
        proxy.wait_ready()
        assert proxy.request("GET", "/queues/mail/jobs", token="old-token")[0] == 200
        url = f"ws://127.0.0.1:{port}"
        old = await connect(url, "/ws/queues/mail", token="old-token")
        kept = await connect(url, "/ws/queues/mail", token="kept-token")
        token_file(tmp_path, [entry("kept", "kept-token", ["*"], ["read"]),
                              entry("new", "new-token", ["mail"], ["write"])])
        proxy.process.send_signal(signal.SIGHUP)
        assert (await old.closed()) == (4401, "token no longer accepted")
        assert "ok" in await kept.call(1, "getJobCounts")
        await kept.close()
        assert proxy.request("GET", "/queues/mail/jobs", token="old-token")[0] == 401
        assert proxy.request("POST", "/queues/mail/jobs", [{"name": "n", "data": 1}],
                             token="new-token")[0] == 200
        assert "Reloaded 2 tokens from TOKENS_FILE" in proxy.output()
    finally:
        proxy.stop()
