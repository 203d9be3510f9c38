"""Outbound safety: the addresses worker endpoints may not have, in every spelling."""

from __future__ import annotations

import pytest
import pytest_twisted

from bullmq_proxy.workers.endpoint_policy import parse_address, policy_of
from tests.support import AUTH

DEFAULT = policy_of("default", (), ("tcp:8080",))
PUBLIC_ONLY = policy_of("public-only", ("hooks.internal",), ("tcp:8080:interface=10.0.0.5",))


@pytest.mark.parametrize("host", [
    "169.254.169.254", "2852039166", "0xa9fea9fe", "0xa9.0xfe.0xa9.0xfe", "0251.0376.0251.0376",
    "169.254.43518", "::ffff:169.254.169.254", "[::ffff:a9fe:a9fe]", "fd00:ec2::254",
    "fe80::1%eth0", "[fe80::1%25eth0]", "0.0.0.0",
])
def test_metadata_and_link_local_addresses_are_refused_in_every_spelling(host):
    assert DEFAULT.refusal(host, 80) is not None


@pytest.mark.parametrize("host", ["127.0.0.1", "2130706433", "0x7f.1", "[::1]", "10.1.2.3",
                                  "192.168.0.10", "localhost", "hooks.example.com"])
def test_the_default_policy_allows_private_and_named_hosts(host):
    assert DEFAULT.refusal(host, 9000) is None


@pytest.mark.parametrize("host", ["127.0.0.1", "0x7f.1", "[::1]", "10.1.2.3", "192.168.0.10",
                                  "100.64.0.1", "::ffff:10.0.0.1"])
def test_public_only_refuses_every_non_public_address(host):
    assert "public-only" in PUBLIC_ONLY.refusal(host, 443)


def test_the_allow_list_wins_and_public_hosts_pass():
    assert PUBLIC_ONLY.refusal("hooks.internal", 443, ["10.0.0.9"]) is None
    assert PUBLIC_ONLY.refusal("93.184.216.34", 443) is None


def test_the_proxys_own_listeners_are_refused():
    assert "own listener" in DEFAULT.refusal("127.0.0.1", 8080)
    assert "own listener" in DEFAULT.refusal("localhost", 8080, ["127.0.0.1"])
    assert DEFAULT.refusal("127.0.0.1", 8081) is None
    assert "own listener" in PUBLIC_ONLY.refusal("10.0.0.5", 8080)


def test_a_host_name_is_checked_by_what_it_resolved_to():
    # DNS rebinding: a public-looking name answering with the metadata address.
    assert "link-local" in DEFAULT.refusal("rebind.example.com", 80, ["169.254.169.254"])
    assert DEFAULT.refusal("rebind.example.com", 80, ["93.184.216.34"]) is None


def test_parse_address_reads_what_a_connect_would():
    assert str(parse_address("0x7f.1")) == "127.0.0.1"
    assert str(parse_address("::ffff:127.0.0.1")) == "127.0.0.1"
    assert parse_address("example.com") is None


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data", "http://2852039166/", "http://[fd00:ec2::254]/",
    "http://127.0.0.1:8080/queues/mail/jobs",
])
@pytest_twisted.ensureDeferred
async def test_registration_refuses_them_naming_the_url(proxy, url, sync_redis):
    body = {"queue": "mail", "endpoint": {"url": url, "method": "POST"}}
    status, problem, _ = await proxy.request("POST", "/workers", json_body=body, headers=AUTH)
    assert (status, problem["field"]) == (400, "endpoint.url")
    assert sync_redis.hlen("bmqp:w:meta") == 0


@pytest_twisted.async_yield_fixture
async def public_only(redis_url):
    from tests.support import make_config, start_live_proxy

    proxy = await start_live_proxy(make_config(redis_url, endpoint_policy="public-only",
                                               worker_stalled_interval=1000))
    yield proxy
    await proxy.stop()


@pytest_twisted.ensureDeferred
async def test_a_host_name_resolving_to_a_refused_address_is_refused_at_connect_time(
        public_only):
    from tests.workers_helpers import add_job, finished, listen_endpoint, ok, register

    endpoint = listen_endpoint(lambda delivery: _ok(ok("done")))
    try:
        # The name passes at registration (it is not an address); it resolves to loopback.
        port = endpoint.port.getHost().port
        await register(public_only, f"http://localhost:{port}/hook", opts={"concurrency": 1})
        job = await finished(public_only, await add_job(public_only, opts={"attempts": 1}))
        assert job["state"] == "failed"
        assert "public-only" in job["failedReason"]
        assert endpoint.deliveries == []
    finally:
        await endpoint.close()


async def _ok(answer):
    return answer


@pytest_twisted.ensureDeferred
async def test_answers_over_the_cap_fail_and_redirects_are_not_followed(redis_url):
    from tests.support import make_config, start_live_proxy
    from tests.workers_helpers import add_job, finished, listen_endpoint, ok, register

    proxy = await start_live_proxy(make_config(redis_url, worker_stalled_interval=1000))
    elsewhere = listen_endpoint(lambda delivery: _ok(ok("reached")))
    big = listen_endpoint(lambda delivery: _ok(ok(b"x" * (2 * 1024 * 1024))))
    moved = listen_endpoint(lambda delivery: _ok((302, {"Location": elsewhere.url}, b"")))
    try:
        await register(proxy, big.url, queue="big-answers")
        job = await finished(proxy, await add_job(proxy, queue="big-answers",
                                                  opts={"attempts": 3}), queue="big-answers")
        assert job["state"] == "failed"
        assert "1048576" in job["failedReason"]
        assert len(big.deliveries) == 1  # not worth another attempt
        await register(proxy, moved.url, queue="moved-away")
        job = await finished(proxy, await add_job(proxy, queue="moved-away",
                                                  opts={"attempts": 1}), queue="moved-away")
        assert job["state"] == "failed"
        assert elsewhere.deliveries == []
    finally:
        for endpoint in (elsewhere, big, moved):
            await endpoint.close()
        await proxy.stop()
