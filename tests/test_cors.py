"""CORS: off by default; CORS_ORIGINS lets the listed origins' pages call the API, with
preflights answered without a token (browsers never send one on a preflight)."""

from __future__ import annotations

import pytest
import pytest_twisted

from bullmq_proxy.config import ConfigError, load_config
from tests.support import AUTH, make_config, start_proxy

APP = "https://app.example.com"


@pytest_twisted.async_yield_fixture
async def cors_proxy(redis_url):
    proxy = await start_proxy(make_config(redis_url, cors_origins=(APP,)))
    yield proxy
    await proxy.stop()


def header(headers, name):
    values = headers.getRawHeaders(name)
    return values[0] if values else None


PREFLIGHT = {"Origin": APP, "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization, content-type"}


@pytest_twisted.ensureDeferred
async def test_a_preflight_from_an_allowed_origin_needs_no_token(cors_proxy):
    status, _, headers = await cors_proxy.request("OPTIONS", "/queues/mail/jobs",
                                                  headers=PREFLIGHT)
    assert status == 204
    assert header(headers, "access-control-allow-origin") == APP
    assert header(headers, "access-control-allow-methods") == "POST, GET, OPTIONS"
    assert "Authorization" in header(headers, "access-control-allow-headers")
    assert header(headers, "allow") == "POST, GET, OPTIONS"


@pytest_twisted.ensureDeferred
async def test_answers_to_an_allowed_origin_carry_its_headers_errors_included(cors_proxy):
    status, _, headers = await cors_proxy.request("GET", "/queues/mail/jobs",
                                                  headers={**AUTH, "Origin": APP})
    assert status == 200
    assert header(headers, "access-control-allow-origin") == APP
    assert "Retry-After" in header(headers, "access-control-expose-headers")
    assert header(headers, "vary") == "Origin"
    status, _, headers = await cors_proxy.request("GET", "/queues/mail/jobs",
                                                  headers={"Origin": APP})
    assert status == 401
    assert header(headers, "access-control-allow-origin") == APP


@pytest_twisted.ensureDeferred
async def test_other_origins_get_no_cors_headers(cors_proxy):
    status, _, headers = await cors_proxy.request(
        "OPTIONS", "/queues/mail/jobs", headers={**PREFLIGHT, "Origin": "https://evil.test"})
    assert status == 204
    assert header(headers, "access-control-allow-origin") is None
    assert header(headers, "access-control-allow-methods") is None


@pytest_twisted.ensureDeferred
async def test_options_of_an_unknown_path_is_404(cors_proxy):
    assert (await cors_proxy.request("OPTIONS", "/nowhere", headers=PREFLIGHT))[0] == 404


@pytest_twisted.ensureDeferred
async def test_off_by_default_options_still_lists_the_methods(proxy):
    status, _, headers = await proxy.request("OPTIONS", "/queues/mail/jobs", headers=PREFLIGHT)
    assert status == 204
    assert header(headers, "allow") == "POST, GET, OPTIONS"
    assert header(headers, "access-control-allow-origin") is None
    status, _, headers = await proxy.request("GET", "/queues/mail/jobs",
                                             headers={**AUTH, "Origin": APP})
    assert header(headers, "access-control-allow-origin") is None


@pytest_twisted.ensureDeferred
async def test_any_origin_with_a_star(redis_url):
    proxy = await start_proxy(make_config(redis_url, cors_origins=("*",)))
    try:
        _, _, headers = await proxy.request("GET", "/", headers={"Origin": "https://x.test"})
        assert header(headers, "access-control-allow-origin") == "*"
    finally:
        await proxy.stop()


@pytest.mark.parametrize("value", ["app.example.com", "https://a.test/path", "ftp://a.test",
                                   "https://"])
def test_cors_origins_must_be_origins(value):
    with pytest.raises(ConfigError, match="CORS_ORIGINS"):
        load_config({"CORS_ORIGINS": value}, {})


def test_cors_origins_are_read_as_a_list():
    assert load_config({"CORS_ORIGINS": f"{APP}, http://localhost:3000"}, {}).cors_origins == (
        APP, "http://localhost:3000")
