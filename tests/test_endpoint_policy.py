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
