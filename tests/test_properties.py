"""Property-based tests (hypothesis) with the strategies that found issue 11: deep nesting,
huge integers and floats, lone surrogates, control characters, long strings. Over every
validator, the REST routes that take JSON and every WebSocket command: never a 5xx or an
``internal`` err, never a dropped socket, never a write to Redis for refused input, and what
is accepted can be encoded by every codec on its way to Redis (JSON, msgpack, UTF-8)."""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest_twisted
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bullmq_proxy import bounds
from bullmq_proxy.config import Config
from bullmq_proxy.errors import ProxyError
from bullmq_proxy.validation import (
    JOB_OPTS,
    REFUSED_JOB_OPTIONS,
    REPEAT_FIELDS,
    parse_json,
    validate_job_opts,
    validate_jobs,
    validate_page,
    validate_states,
)
from bullmq_proxy.workers.http_client import EndpointURL, _Target
from bullmq_proxy.workers.metadata import (
    ENDPOINT_FIELDS,
    OPTS_FIELDS,
    _validate_url,
    parse_metadata,
)
from bullmq_proxy.workers.policy import Reply, Verdict, judge
from bullmq_proxy.ws.commands import COMMANDS
from bullmq_proxy.ws.paths import parse_target
from tests.support import AUTH, make_config, start_live_proxy
from tests.ws_support import connect, on_asyncio

CONFIG = Config()
HUGE = [2**53, 2**53 - 1, 2**63, 2**63 - 1, 2**64, 2**64 - 1, 10**14, 10**14 - 1, 10**20,
        -(2**63)]

# Text as attackers send it: lone surrogates, control and format characters, long runs.
texts = st.one_of(
    st.text(st.characters(codec=None, categories=["Cs", "Cc", "Cf", "Zl", "Zp"]), max_size=8),
    st.sampled_from(["\ud800", "\udfff", "a\x00b", "\n", "\u2028", "²", "٣", "1e400", ""]),
    st.builds(lambda c, n: c * n, st.sampled_from("x\n\x00"), st.integers(1, 5000)),
)
numbers = st.one_of(
    st.integers(-5, 10**6), st.integers(), st.sampled_from(HUGE),
    st.sampled_from([-h for h in HUGE]), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e20, 1e308, -0.0, 0.5]),
)
# Numbers that overflow a double, written out (10**400) or as 1e400 (see encode).
overflowing = st.sampled_from([10**400, -(10**400), float("inf"), float("-inf")])
plain = st.one_of(st.text(max_size=12), st.sampled_from(["fixed", "exponential", "* * * * *",
                                                        "Europe/Paris", "2030-01-01T00:00Z"]))
# Hostile values are one draw in a few, so that most bodies get past the parser and reach
# the option validators.
scalars = st.one_of(st.none(), st.booleans(), numbers, numbers, plain, plain,
                    st.integers(0, 7).flatmap(lambda n: texts if n == 0 else plain),
                    st.integers(0, 7).flatmap(lambda n: overflowing if n == 0 else numbers))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(plain, plain, plain, texts), inner,
                                                 max_size=4)), max_leaves=12)


def nested(depth: int) -> Any:
    value: Any = 1
    for level in range(depth):
        value = [value] if level % 2 else {"a": value}
    return value


deep = st.integers(bounds.MAX_JSON_DEPTH - 2, 1500).map(nested)
# One value in ten nested deep: each body holds several, and most should reach the validators.
anything = st.integers(0, 9).flatmap(lambda n: deep if n == 0 else values)


def encode(value: Any) -> bytes:
    """JSON as a hostile client writes it: lone surrogates escaped, big and infinite numbers
    spelt out (1e400 included)."""
    text = json.dumps(value, allow_nan=True).replace("Infinity", "1e400").replace("NaN", "0")
    return text.encode("utf-8")


def keyed(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with known keys (so that validation goes deep) and hostile values."""
    return st.dictionaries(st.sampled_from(keys), st.one_of(anything, numbers, numbers),
                           max_size=5)


job_opts = st.one_of(keyed(sorted(JOB_OPTS | set(REFUSED_JOB_OPTIONS) | {"x"})),
                     keyed(["repeat"]).map(lambda o: {"repeat": o.get("repeat")}),
                     keyed(sorted(REPEAT_FIELDS)).map(lambda r: {"repeat": r}))
jobs = st.lists(st.fixed_dictionaries({"name": st.one_of(st.just("n"), st.just("n"), texts,
                                                        numbers), "data": anything},
                                      optional={"opts": job_opts}), max_size=3)
registrations = st.fixed_dictionaries(
    {"queue": st.one_of(st.just("mail"), texts),
     "endpoint": st.one_of(
         keyed(sorted(ENDPOINT_FIELDS)),
         st.fixed_dictionaries({"url": st.just("http://a.test/"), "method": st.just("POST")},
                               optional={k: anything
                                         for k in ENDPOINT_FIELDS - {"url", "method"}}))},
    optional={"opts": keyed(sorted(OPTS_FIELDS))})


def stored_safely(value: Any) -> None:
    """What every codec on the way to Redis does with an accepted value."""
    json.dumps(value, allow_nan=False).encode("utf-8")
    msgpack.packb(value)


def outcome(call: Any, *args: Any) -> tuple[Any, ProxyError | None]:
    try:
        return call(*args), None
    except ProxyError as err:
        return None, err


def refused_with_400(call: Any, *args: Any) -> Any:
    """The call's result, or None when it refused with a 400 naming a field."""
    result, error = outcome(call, *args)
    if error is not None:
        assert error.kind.status == 400, error.detail
        assert error.field, error.detail
    return result


FAST = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.one_of(anything.map(encode), st.binary(max_size=64)))
def test_parse_json_refuses_with_400_or_gives_what_redis_takes(raw):
    value = refused_with_400(parse_json, raw)
    if value is not None:
        stored_safely(value)


@FAST
@given(st.one_of(jobs, anything))
def test_jobs_are_refused_with_400_or_safe_to_store(body):
    try:
        body = parse_json(encode(body))
    except ProxyError:
        return
    accepted = refused_with_400(validate_jobs, body)
    for job in accepted or ():
        stored_safely({"name": job.name, "data": job.data, "opts": job.opts})
        for number in _integers(job.opts):
            assert 0 <= number <= bounds.MAX_STORED_INTEGER


@FAST
@given(job_opts)
def test_job_options_are_refused_with_400_or_safe_to_store(opts):
    try:
        opts = parse_json(encode(opts))
    except ProxyError:
        return
    accepted = refused_with_400(validate_job_opts, opts, "opts")
    if accepted is not None:
        stored_safely(accepted)


@FAST
@given(registrations)
def test_registrations_are_refused_with_400_or_runnable(body):
    try:
        body = parse_json(encode(body))
    except ProxyError:
        return
    metadata = refused_with_400(parse_metadata, body, CONFIG)
    if metadata is not None:
        assert metadata.concurrency in bounds.CONCURRENCY
        assert metadata.endpoint.timeout_ms in bounds.ENDPOINT_TIMEOUT
        assert "@" not in metadata.endpoint.url.split("/")[2]


URL_PIECES = st.lists(st.sampled_from(
    [*"aZ09-._~:/?#[]@!$&'()*+,;=%", "::1", "..", "%zz", "%41", "_", "\u00e9", " ", "\x00"]),
    max_size=20).map("".join)


@FAST
@given(st.sampled_from(["http://", "https://", "ftp://", ""]),
       st.one_of(st.sampled_from(["a.test", "[::1]", "my_service", "a..b", "[fe80::1%25lo]"]),
                 URL_PIECES),
       st.sampled_from(["", ":8080", ":0", ":65536", ":x"]), URL_PIECES)
def test_endpoint_urls_are_refused_with_400_or_callable(scheme, host, port, rest):
    url = refused_with_400(_validate_url, scheme + host + port + rest)
    if url is not None:
        # What every call then sends, and what the agent reads of it.
        _Target(EndpointURL.of(url).to_text().encode("ascii"))


@FAST
@given(st.dictionaries(st.sampled_from(["start", "length", "x"]), texts), st.one_of(st.none(),
                                                                                   texts))
def test_paging_and_states_are_refused_with_400(query, statuses):
    page = refused_with_400(validate_page, query)
    if page is not None:
        assert page.start in bounds.INDEX
        assert page.length in bounds.PAGE_LENGTH
    refused_with_400(validate_states, statuses)


@FAST
@given(st.lists(st.one_of(texts, st.sampled_from(["ws", "queues", "mail", "process", "events"]),
                          st.integers().map(str)), max_size=6), st.binary(max_size=8))
def test_socket_paths_are_refused_with_4xx(segments, junk):
    from urllib.parse import quote

    path = ("/" + "/".join(quote(s.encode("utf-8", "surrogatepass")) for s in segments)
            ).encode() + junk.replace(b"?", b"")
    _, error = outcome(parse_target, path, {}, CONFIG)
    assert error is None or error.kind.status in (400, 404)


@FAST
@given(st.integers(100, 599), st.dictionaries(
    st.sampled_from(["retry-after", "bullmq-proxy-retry", "content-type"]),
    st.one_of(texts, st.sampled_from(["application/json", "after=99999999999999999999",
                                      "9" * 400, "Fri, 31 Dec 9999 23:59:59 GMT"])),
    max_size=3), st.one_of(anything.map(encode), st.binary(max_size=64)))
def test_every_endpoint_answer_gets_a_bounded_verdict(status, headers, body):
    outcome = judge(Reply(status, headers, body), 1_700_000_000.0)
    assert 0 <= outcome.delay_ms <= 3_600_000
    if outcome.verdict is Verdict.COMPLETE:
        stored_safely(outcome.value)
    json.dumps(outcome.reason).encode("utf-8")


def _integers(value: Any) -> list[int]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, dict):
        return [n for item in value.values() for n in _integers(item)]
    if isinstance(value, list):
        return [n for item in value for n in _integers(item)]
    return []


# Through real sockets, against the real Redis.


def snapshot(sync_redis) -> dict[str, Any]:
    return {key: sync_redis.dump(key) for key in sync_redis.keys("*")}


def drawn(strategy: st.SearchStrategy[Any], count: int) -> list[Any]:
    """``count`` examples of ``strategy``, drawn before the test runs them: the socket tests
    await the reactor, which a hypothesis test body cannot. (No shrinking: a failure names
    the whole example.)"""
    examples: list[Any] = []

    @settings(max_examples=count, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(example: Any) -> None:
        examples.append(example)

    collect()
    return examples


@pytest_twisted.async_yield_fixture
async def live(redis_url):
    proxy = await start_live_proxy(make_config(redis_url))
    yield proxy
    await proxy.stop()


@pytest_twisted.ensureDeferred
async def test_rest_answers_hostile_json_with_4xx_and_writes_nothing(live, sync_redis):
    bodies = drawn(st.tuples(st.sampled_from(["/queues/mail/jobs", "/workers"]),
                             st.one_of(jobs, registrations, anything).map(encode)), 120)
    for path, raw in bodies:
        before = snapshot(sync_redis)
        status, body, _ = await live.request("POST", path, body=raw, headers=AUTH)
        assert status < 500, (path, raw[:300], body)
        if status >= 400:
            assert body["type"].startswith("/problems/"), body
            assert snapshot(sync_redis) == before, (path, raw[:300], body)
        sync_redis.flushdb()


def _command_frames() -> st.SearchStrategy[bytes]:
    args = st.lists(st.one_of(anything, jobs, job_opts), max_size=4)
    frame = st.fixed_dictionaries({
        "id": st.one_of(st.integers(0, 10**6), st.sampled_from(HUGE), texts),
        "data": st.fixed_dictionaries({"fn": st.sampled_from(sorted(COMMANDS)), "args": args})})
    return st.one_of(frame.map(encode), anything.map(encode), st.binary(max_size=32))


@on_asyncio
async def test_every_websocket_command_answers_hostile_args_without_internal_errors(
        live, sync_redis):
    ws = await connect(live.url, "/ws/queues/mail")
    try:
        for frame in drawn(_command_frames(), 200):
            before = snapshot(sync_redis)
            ws.send(frame)
            reply = await ws.recv()
            assert ws.connection.close_code is None, frame[:300]
            err = reply["data"].get("err")
            if err is not None:
                assert err["code"] != "internal", (frame[:300], err)
                assert snapshot(sync_redis) == before, (frame[:300], err)
            sync_redis.flushdb()
    finally:
        await ws.close()
