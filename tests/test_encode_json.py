"""The router's JSON encoder: orjson's output, and the standard library's where orjson refuses."""

from __future__ import annotations

import json

import pytest_twisted

from bullmq_proxy.encoding import encode_json
from tests.support import AUTH, make_config, start_proxy


def test_compact_json_that_round_trips():
    body = {"name": "ünïcode", "data": [1, 2.5, None, True, {"a": "b"}], "n": -(2**63)}
    encoded = encode_json(body)
    assert json.loads(encoded) == body
    assert b" " not in encoded.replace("ünïcode".encode(), b"")


def test_integers_beyond_64_bits_and_non_string_keys_fall_back():
    assert json.loads(encode_json({"big": 2**70})) == {"big": 2**70}
    assert encode_json({1: "one"}) == b'{"1":"one"}'


@pytest_twisted.ensureDeferred
async def test_a_job_with_a_huge_integer_is_answered_whole(redis_url):
    proxy = await start_proxy(make_config(redis_url))
    try:
        status, body, _ = await proxy.request(
            "POST", "/queues/mail/jobs", json_body=[{"name": "big", "data": {"n": 2**80}}],
            headers=AUTH)
    finally:
        await proxy.stop()
    assert status == 200
    assert body[0]["data"] == {"n": 2**80}
