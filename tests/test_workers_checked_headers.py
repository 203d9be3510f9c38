"""Header blocks checked once: the same names and values Twisted's ``Headers`` would hold,
no line break smuggled through, and copies that never write back into the block."""

from __future__ import annotations

import pytest
from treq.testing import StringStubbingResource, StubTreq
from twisted.internet.task import Clock
from twisted.web.http_headers import Headers, InvalidHeaderName
from twisted.web.resource import Resource

from bullmq_proxy.workers.checked_headers import (
    CheckedHeaders,
    FirstValues,
    block_of,
    canonical_name,
    single_line,
)
from bullmq_proxy.workers.dispatcher import EndpointCaller
from bullmq_proxy.workers.metadata import Endpoint
from bullmq_proxy.workers.policy import Outcome, Verdict


@pytest.mark.parametrize("name", [b"content-type", b"CONTENT-LENGTH", b"etag", b"x-xss-protection",
                                  b"BullMQ-Proxy-Job-Id", b"x_custom", b"te"])
def test_names_are_canonical_as_twisted_stores_them(name):
    twisted = Headers()
    twisted.addRawHeader(name, b"v")
    assert [canonical_name(name)] == [n for n, _ in twisted.getAllRawHeaders()]


def test_a_name_that_is_no_token_is_refused():
    with pytest.raises(InvalidHeaderName):
        canonical_name(b"x y")


def test_line_breaks_become_spaces():
    assert single_line(b"a\r\nX-Evil: 1") == b"a X-Evil: 1"
    assert single_line(b"a\nb\rc") == b"a b c"
    assert single_line(b"plain") == b"plain"


def test_a_copy_is_its_own_block():
    block = block_of({"X-Team": "a"})
    headers = CheckedHeaders(block)
    copy = headers.copy()
    copy.addRawHeader(b"x-team", b"b")
    copy.addRawHeader(b"Accept-Encoding", b"gzip")
    assert isinstance(copy, CheckedHeaders)
    assert headers.getRawHeaders(b"X-TEAM") == [b"a"]
    assert block == {b"X-Team": [b"a"]}
    assert copy.getRawHeaders(b"x-team") == [b"a", b"b"]
    assert copy.hasHeader("accept-encoding")


def test_twisted_methods_still_check_what_they_are_given():
    headers = CheckedHeaders()
    headers.addRawHeader(b"X-A", b"1\r\nX-B: 2")
    assert headers.getRawHeaders(b"x-a") == [b"1 X-B: 2"]


def test_pairs_keep_every_value_in_order_and_single_line():
    headers = CheckedHeaders.of_pairs([(b"set-cookie", b"a=1"), (b"Content-Type", b"text/plain"),
                                       (b"SET-COOKIE", b"b=2\r\nX: y")])
    assert headers.getRawHeaders(b"Set-Cookie") == [b"a=1", b"b=2 X: y"]
    assert dict(headers.getAllRawHeaders()) == {b"Set-Cookie": [b"a=1", b"b=2 X: y"],
                                               b"Content-Type": [b"text/plain"]}


def test_a_later_name_that_differs_in_case_replaces_the_earlier():
    assert block_of({"Content-Type": "application/json", "content-type": "text/csv"}) == {
        b"Content-Type": [b"text/csv"]}


def test_first_values_read_as_the_verdict_reads_them():
    headers = CheckedHeaders.of_pairs([(b"Retry-After", b"3"), (b"retry-after", b"9"),
                                       (b"Content-Type", b"caf\xe9")])
    view = FirstValues(headers)
    assert view["retry-after"] == "3"
    assert view.get("content-type") == "café"
    assert view.get("bullmq-proxy-retry") is None
    assert dict(view) == {"retry-after": "3", "content-type": "café"}
    assert len(view) == 2
    # Any IResponse's headers, not only checked ones.
    assert FirstValues(Headers({b"ETag": [b"x"]}))["etag"] == "x"


URL = "http://endpoint.test/hook"


def call_with(job_id: str, endpoint_headers: dict[str, str]) -> dict[bytes, list[bytes]]:
    """The headers one call sends, as the endpoint (a real resource tree) receives them."""
    seen: list[dict[bytes, list[bytes]]] = []

    def record(method, url, params, headers, data):
        seen.append({name.lower(): values for name, values in headers.items()})
        return 204, {}, b""

    stub = StubTreq(StringStubbingResource(record))
    caller = EndpointCaller(stub, Clock(), "mail", Endpoint(URL, "POST", endpoint_headers, 3000))
    outcomes = []
    caller.call(job_id, 1, b"{}").addBoth(outcomes.append)
    stub.flush()
    assert outcomes == [Outcome(Verdict.COMPLETE, "")]
    assert len(seen) == 1
    return seen[0]


def test_a_job_id_cannot_smuggle_a_header_into_the_call():
    sent = call_with("7\r\nX-Evil: 1", {})
    assert b"x-evil" not in sent
    assert sent[b"bullmq-proxy-job-id"] == [b"7 X-Evil: 1"]
    assert sent[b"idempotency-key"] == [b"mail:7 X-Evil: 1"]


def test_an_endpoint_content_type_in_any_case_is_the_only_one_sent():
    sent = call_with("7", {"content-type": "application/x-custom"})
    assert sent[b"content-type"] == [b"application/x-custom"]


def test_calls_do_not_share_their_blocks():
    caller = EndpointCaller(StubTreq(Resource()), Clock(), "mail",
                            Endpoint(URL, "POST", {"X-Team": "a"}, 3000))
    first = caller.headers("7", 1, b"{}")
    first.addRawHeader(b"X-Team", b"b")
    second = caller.headers("8", 2, b"{}")
    assert second.getRawHeaders(b"X-Team") == [b"a"]
    assert second.getRawHeaders(b"BullMQ-Proxy-Attempt") == [b"2"]
