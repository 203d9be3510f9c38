"""Every failure path of the REST layer answers JSON problems, never HTML or a hang."""

from __future__ import annotations

import os
import stat

import pytest
import pytest_twisted
from bullmq_proxy_plugins.static_tokens import StaticTokens
from twisted.internet import protocol
from twisted.internet.address import IPv4Address
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import implementer

from bullmq_proxy.auth import Gate, IAuthenticator, Policy, load_or_create_token
from bullmq_proxy.config import ConfigError
from bullmq_proxy.errors import ProxyError
from bullmq_proxy.plugins import load_plugins
from bullmq_proxy.redis.embedded import free_port
from tests.support import AUTH, TOKEN, aio, make_config, start_proxy


@pytest_twisted.async_yield_fixture
async def proxy(redis_url):
    running = await start_proxy(make_config(redis_url, max_body_size=200))
    yield running
    await running.stop()


@pytest_twisted.ensureDeferred
async def test_unknown_route_is_404_json(proxy):
    status, body, headers = await proxy.request("GET", "/nope/nothing", headers=AUTH)
    assert status == 404
    assert body["type"] == "/problems/not-found"
    assert body["instance"] == "/nope/nothing"
    assert headers.getRawHeaders("content-type") == ["application/problem+json"]


@pytest_twisted.ensureDeferred
async def test_wrong_method_is_405_with_allow(proxy):
    status, body, headers = await proxy.request("DELETE", "/queues/mail/jobs", headers=AUTH)
    assert status == 405
    assert body["type"] == "/problems/method-not-allowed"
    assert headers.getRawHeaders("allow") == ["POST, GET"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
     {"Authorization": "Bearer "}],
)
@pytest_twisted.ensureDeferred
async def test_missing_or_wrong_token_is_401(proxy, headers):
    status, body, response_headers = await proxy.request("GET", "/queues/mail/jobs",
                                                         headers=headers)
    assert status == 401
    assert body["type"] == "/problems/unauthorized"
    assert response_headers.getRawHeaders("www-authenticate") == ['Bearer realm="bullmq-proxy"']
    assert TOKEN not in str(body)


@pytest_twisted.ensureDeferred
async def test_rest_does_not_take_the_token_from_the_query(proxy):
    status, _, _ = await proxy.request("GET", f"/queues/mail/jobs?token={TOKEN}")
    assert status == 401


@pytest_twisted.ensureDeferred
async def test_oversize_body_is_413(proxy, sync_redis):
    jobs = b'[{"name": "big", "data": "' + b"x" * 500 + b'"}]'
    status, body, _ = await proxy.request("POST", "/queues/mail/jobs", body=jobs, headers=AUTH)
    assert status == 413
    assert body["type"] == "/problems/payload-too-large"
    assert sync_redis.keys("bull:mail:*") == []


@pytest.mark.parametrize(
    ("raw", "slug", "field"),
    [(b"[{", "invalid-json", "body"), (b"", "invalid-json", "body"),
     (b'{"name": "a", "data": 1}', "invalid-field", "body"),
     (b'[{"name": "a", "data": 1, "opts": {"delay": "x"}}]', "invalid-field", "[0].opts.delay")],
)
@pytest_twisted.ensureDeferred
async def test_bad_bodies_never_reach_redis(proxy, sync_redis, raw, slug, field):
    status, body, _ = await proxy.request("POST", "/queues/mail/jobs", body=raw, headers=AUTH)
    assert status == 400
    assert body["type"] == f"/problems/{slug}"
    assert body["field"] == field
    assert sync_redis.keys("bull:mail:*") == []


@pytest_twisted.ensureDeferred
async def test_redis_outage_is_503_not_a_hang():
    config = make_config(f"redis://127.0.0.1:{free_port()}/0")
    proxy = await start_proxy(config)
    try:
        status, body, headers = await proxy.request(
            "POST", "/queues/mail/jobs", json_body=[{"name": "a", "data": 1}], headers=AUTH)
        assert status == 503
        assert body["type"] == "/problems/redis-unavailable"
        assert headers.getRawHeaders("retry-after") == ["1"]
    finally:
        await proxy.stop()


class _Silent(protocol.Protocol):
    """Accepts the connection and never answers, like a stuck Redis."""


@pytest_twisted.async_yield_fixture
async def stuck_redis_proxy():
    """A proxy whose Redis accepts connections and never answers; REQUEST_TIMEOUT 0.3 s."""
    from twisted.internet import reactor

    port = reactor.listenTCP(0, protocol.Factory.forProtocol(_Silent), interface="127.0.0.1")
    url = f"redis://127.0.0.1:{port.getHost().port}/0"
    proxy = await start_proxy(make_config(url, request_timeout=0.3))
    yield proxy
    await proxy.stop()
    await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_redis_that_never_answers_gives_504(stuck_redis_proxy):
    status, body, _ = await stuck_redis_proxy.request("GET", "/queues/mail/jobs/1",
                                                      headers=AUTH)
    assert status == 504
    assert body["type"] == "/problems/timeout"


# The job API used by worker endpoints: authorized by the job's lock token.


async def _locked_job(proxy, sync_redis, token="lock-token-1"):
    await proxy.request("POST", "/queues/mail/jobs", json_body=[{"name": "a", "data": 1}],
                        headers=AUTH)
    sync_redis.set("bull:mail:1:lock", token)
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(("sent", "stored"), [(50, "50"), ({"progress": 75}, "75"),
                                              ({"step": 2}, '{"step": 2}')])
@pytest_twisted.ensureDeferred
async def test_progress_with_the_lock_token(proxy, sync_redis, sent, stored):
    lock = await _locked_job(proxy, sync_redis)
    status, body, _ = await proxy.request("POST", "/queues/mail/jobs/1/progress",
                                          json_body=sent, headers=lock)
    assert (status, body) == (200, "OK")
    assert sync_redis.hget("bull:mail:1", "progress").replace(" ", "") == stored.replace(" ", "")


@pytest.mark.parametrize("sent", [{"log": "step one"}, "step one"])
@pytest_twisted.ensureDeferred
async def test_log_with_the_lock_token(proxy, sync_redis, sent):
    lock = await _locked_job(proxy, sync_redis)
    status, body, _ = await proxy.request("POST", "/queues/mail/jobs/1/logs",
                                          json_body=sent, headers=lock)
    assert (status, body) == (200, "OK")
    assert sync_redis.lrange("bull:mail:1:logs", 0, -1) == ["step one"]


@pytest.mark.parametrize(("path", "sent", "field"),
                         [("progress", "half", "progress"), ("progress", True, "progress"),
                          ("logs", 5, "log"), ("logs", {"log": 5}, "log")])
@pytest_twisted.ensureDeferred
async def test_job_api_refuses_bad_bodies(proxy, sync_redis, path, sent, field):
    lock = await _locked_job(proxy, sync_redis)
    status, body, _ = await proxy.request("POST", f"/queues/mail/jobs/1/{path}",
                                          json_body=sent, headers=lock)
    assert status == 400
    assert body["field"] == field


@pytest.mark.parametrize("headers", [{"Authorization": "Bearer not-the-lock"}, AUTH, {}])
@pytest_twisted.ensureDeferred
async def test_job_api_needs_the_lock_token(proxy, sync_redis, headers):
    await _locked_job(proxy, sync_redis)
    status, _, _ = await proxy.request("POST", "/queues/mail/jobs/1/progress",
                                       json_body=10, headers=headers)
    assert status == 401
    assert sync_redis.hget("bull:mail:1", "progress") is None


@pytest_twisted.ensureDeferred
async def test_job_api_refuses_when_the_lock_expired(proxy, sync_redis):
    lock = await _locked_job(proxy, sync_redis)
    sync_redis.delete("bull:mail:1:lock")
    status, _, _ = await proxy.request("POST", "/queues/mail/jobs/1/logs", json_body="x",
                                       headers=lock)
    assert status == 401


# Tokens and plugins.


def test_generated_token_is_kept_private_and_reused(tmp_path):
    token, created = load_or_create_token(str(tmp_path / "data"))
    assert created
    assert len(token) >= 40
    path = tmp_path / "data" / "auth-token"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_token(str(tmp_path / "data")) == (token, False)


def test_unknown_plugin_is_a_config_error():
    with pytest.raises(ConfigError, match="--plugin 'ldap' is not installed"):
        load_plugins(make_config(), ["ldap"])


def test_static_tokens_plugin_is_found_by_entry_point():
    plugin, token_file = load_plugins(make_config(auth_tokens=("a", "b")), [])
    assert IAuthenticator.providedBy(plugin)
    # The token-file plugin is loaded too; without TOKENS_FILE it accepts nothing.
    assert IAuthenticator.providedBy(token_file)
    assert token_file.authenticate("a") is False
    assert plugin.authenticate("b") is True
    assert plugin.authenticate("c") is False


@implementer(IAuthenticator)
class _Prefix:
    name = "prefix"

    def authenticate(self, token):
        return token.startswith("svc-")


def _request_with(authorization):
    request = DummyRequest([b"queues"])
    request.requestHeaders.setRawHeaders(b"authorization", [authorization])
    request.getClientAddress = lambda: IPv4Address("TCP", "127.0.0.1", 4000)
    request.path = b"/queues"
    return request


@pytest_twisted.ensureDeferred
async def test_any_authenticator_may_accept():
    gate = Gate([StaticTokens(make_config()), _Prefix()], client=None, queues=None)
    await aio(gate.authorize(_request_with(b"Bearer svc-1"), Policy.TOKEN, {}))
    await aio(gate.authorize(_request_with(f"Bearer {TOKEN}".encode()), Policy.TOKEN, {}))
    with pytest.raises(ProxyError):
        await aio(gate.authorize(_request_with(b"Bearer other"), Policy.TOKEN, {}))


@pytest_twisted.ensureDeferred
async def test_every_request_past_the_timeout_gets_504_and_the_others_their_answer(
        stuck_redis_proxy):
    from twisted.internet import defer

    proxy = stuck_redis_proxy
    stuck = [defer.ensureDeferred(proxy.request("GET", f"/queues/mail/jobs/{n}",
                                                headers=AUTH)) for n in range(5)]
    quick = await proxy.request("GET", "/")  # no Redis: answered meanwhile
    assert quick[0] == 200
    answers = await defer.gatherResults(stuck)
    assert [status for status, _, _ in answers] == [504] * 5
    assert (await proxy.request("GET", "/queues/mail/jobs/9", headers=AUTH))[0] == 504
