"""The endpoint call and the response-code table, with StubTreq and a Clock: no network."""

from __future__ import annotations

import json

import pytest
from treq.testing import HasHeaders, RequestSequence, StringStubbingResource, StubTreq
from twisted.internet.error import (
    ConnectionDone,
    ConnectionLost,
    ConnectionRefusedError,
    DNSLookupError,
)
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.client import ResponseFailed, ResponseNeverReceived
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from bullmq_proxy.workers.dispatcher import EndpointCaller
from bullmq_proxy.workers.metadata import Endpoint
from bullmq_proxy.workers.policy import (
    DEFAULT_MAX_RETRY_DELAY_MS,
    Outcome,
    Reply,
    Verdict,
    judge,
    judge_error,
)

URL = "http://endpoint.test/hook"
BODY = json.dumps({"job": {"id": "7"}, "token": "tok"}).encode()


def caller_for(resource, clock=None, timeout_ms=3000, headers=None):
    stub = StubTreq(resource)
    endpoint = Endpoint(URL, "PUT", headers or {"X-Team": "a"}, timeout_ms)
    return stub, EndpointCaller(stub, clock or Clock(), "mail", endpoint)


def outcome_of(stub, d) -> Outcome:
    results = []
    d.addBoth(results.append)
    stub.flush()
    assert len(results) == 1, "the call did not finish"
    assert isinstance(results[0], Outcome), results[0]
    return results[0]


def sequence_resource(code, headers, body, failures):
    expected = (
        b"put", URL, {},
        HasHeaders({b"content-type": [b"application/json"], b"x-team": [b"a"],
                    b"bullmq-proxy-job-id": [b"7"], b"bullmq-proxy-attempt": [b"2"],
                    b"idempotency-key": [b"mail:7"]}),
        BODY,
    )
    return RequestSequence([(expected, (code, headers, body))], failures.append)


def test_sends_method_headers_and_body_and_completes_with_text():
    failures = []
    sequence = sequence_resource(200, {b"content-type": b"text/plain"}, b"foo bar", failures)
    stub, caller = caller_for(StringStubbingResource(sequence))
    with sequence.consume(pytest.fail):
        outcome = outcome_of(stub, caller.call("7", 2, BODY))
    assert failures == []
    assert outcome == Outcome(Verdict.COMPLETE, value="foo bar")


def test_json_answer_is_parsed():
    failures = []
    sequence = sequence_resource(201, {b"content-type": b"application/json"}, b'{"a": [1]}',
                                 failures)
    stub, caller = caller_for(StringStubbingResource(sequence))
    with sequence.consume(pytest.fail):
        assert outcome_of(stub, caller.call("7", 2, BODY)).value == {"a": [1]}
    assert failures == []


def test_configured_content_type_wins():
    failures = []
    sequence = RequestSequence(
        [((b"put", URL, {}, HasHeaders({b"content-type": [b"application/x-custom"]}), BODY),
          (204, {}, b""))], failures.append)
    stub, caller = caller_for(StringStubbingResource(sequence),
                              headers={"Content-Type": "application/x-custom"})
    with sequence.consume(pytest.fail):
        assert outcome_of(stub, caller.call("7", 2, BODY)) == Outcome(Verdict.COMPLETE, "")
    assert failures == []


class Silent(Resource):
    isLeaf = True

    def render(self, request):
        return NOT_DONE_YET


class Answering(Resource):
    isLeaf = True

    def render(self, request):
        request.setHeader(b"content-type", b"text/plain")
        return b"done"


TIMED_OUT = Outcome(Verdict.RETRY, reason="endpoint did not answer within 250 ms")


def started(stub, caller, job_id: str = "7") -> list:
    """Start a call of ``job_id``; what it ends with lands in the list returned."""
    results: list = []
    caller.call(job_id, 1, BODY).addBoth(results.append)
    stub.flush()
    return results


def test_timeout_fails_the_attempt_when_the_clock_passes_it():
    clock = Clock()
    stub, caller = caller_for(Silent(), clock, timeout_ms=250)
    results = started(stub, caller)
    clock.advance(0.249)
    assert results == []
    clock.advance(0.002)
    assert results == [TIMED_OUT]


def test_calls_started_apart_time_out_each_at_its_own_deadline():
    clock = Clock()
    stub, caller = caller_for(Silent(), clock, timeout_ms=250)
    first = started(stub, caller, "7")
    clock.advance(0.1)
    second = started(stub, caller, "8")
    assert len(clock.getDelayedCalls()) == 1  # one timer for both calls
    clock.advance(0.151)
    assert first == [TIMED_OUT]
    assert second == []
    clock.advance(0.1)
    assert second == [TIMED_OUT]


def test_a_call_answered_in_time_is_not_timed_out_later():
    clock = Clock()
    stub, caller = caller_for(Answering(), clock, timeout_ms=250)
    results = started(stub, caller)
    clock.advance(1)
    assert results == [Outcome(Verdict.COMPLETE, value="done")]


def test_connection_error_fails_the_attempt():
    class Refusing:
        def request(self, method, url, **kwargs):
            from twisted.internet.defer import fail
            return fail(ConnectionRefusedError("127.0.0.1:9"))

    caller = EndpointCaller(Refusing(), Clock(), "mail", Endpoint(URL, "POST", {}, 100))
    results = []
    caller.call("7", 1, BODY).addBoth(results.append)
    assert results[0].verdict is Verdict.RETRY
    assert results[0].reason.startswith("endpoint call failed: Connection was refused")


def reply(status, body=b"", **headers):
    return Reply(status, {k.replace("_", "-"): v for k, v in headers.items()}, body)


NOW = 1_700_000_000.0


@pytest.mark.parametrize(("answer", "verdict", "delay"), [
    (reply(200, b"x"), Verdict.COMPLETE, 0),
    (reply(299), Verdict.COMPLETE, 0),
    (reply(202, b"queued"), Verdict.ACCEPTED, 0),
    (reply(500, b"boom"), Verdict.RETRY, 0),
    (reply(502), Verdict.RETRY, 0),
    (reply(503), Verdict.RETRY, 0),
    (reply(503, retry_after="3"), Verdict.DELAY, 3000),
    (reply(429), Verdict.RETRY, 0),
    (reply(429, retry_after="0"), Verdict.DELAY, 0),
    (reply(429, retry_after="Tue, 14 Nov 2023 22:13:30 GMT"), Verdict.DELAY, 10_000),
    (reply(429, retry_after="soon"), Verdict.RETRY, 0),
    (reply(500, retry_after="3"), Verdict.RETRY, 0),
    (reply(400), Verdict.FAIL, 0),
    (reply(401), Verdict.FAIL, 0),
    (reply(404), Verdict.FAIL, 0),
    (reply(422), Verdict.FAIL, 0),
    (reply(408), Verdict.RETRY, 0),
    (reply(409), Verdict.RETRY, 0),
    (reply(425), Verdict.RETRY, 0),
    (reply(301), Verdict.RETRY, 0),
    (reply(500, bullmq_proxy_retry="never"), Verdict.FAIL, 0),
    (reply(500, bullmq_proxy_retry="after=1500"), Verdict.DELAY, 1500),
    (reply(400, bullmq_proxy_retry="after=20"), Verdict.DELAY, 20),
    (reply(503, retry_after="9", bullmq_proxy_retry="never"), Verdict.FAIL, 0),
    (reply(500, bullmq_proxy_retry="whenever"), Verdict.RETRY, 0),
    (reply(200, bullmq_proxy_retry="never"), Verdict.COMPLETE, 0),
])
def test_response_code_table(answer, verdict, delay):
    outcome = judge(answer, NOW)
    assert outcome.verdict is verdict
    assert outcome.delay_ms == delay


def test_failed_reason_names_status_and_first_bytes():
    outcome = judge(reply(500, b"x" * 1000), NOW)
    assert outcome.reason == "endpoint answered 500: " + "x" * 200
    assert judge(reply(404), NOW).reason == "endpoint answered 404"


def test_invalid_json_answer_is_retried():
    outcome = judge(Reply(200, {"content-type": "application/json"}, b"{oops"), NOW)
    assert outcome.verdict is Verdict.RETRY
    assert "not valid JSON" in outcome.reason


def test_empty_json_answer_completes_with_empty_text():
    assert judge(Reply(200, {"content-type": "application/json"}, b""), NOW).value == ""


def test_errors_without_a_message_use_their_class_name():
    assert judge_error(RuntimeError(), 100).reason == "endpoint call failed: RuntimeError"


class Big(Resource):
    isLeaf = True

    def render(self, request):
        return b"x" * 5000


def test_an_answer_larger_than_the_limit_fails_the_job():
    stub = StubTreq(Big())
    caller = EndpointCaller(stub, Clock(), "mail", Endpoint(URL, "POST", {}, 1000),
                            max_answer_bytes=4096)
    outcome = outcome_of(stub, caller.call("7", 1, BODY))
    assert outcome == Outcome(Verdict.FAIL,
                              reason="the endpoint's answer is larger than 4096 bytes")
    small = EndpointCaller(stub, Clock(), "mail", Endpoint(URL, "POST", {}, 1000),
                           max_answer_bytes=5000)
    assert outcome_of(stub, small.call("7", 1, BODY)).value == "x" * 5000


# Answers that the first release could not take (issue 11).

HOUR_MS = DEFAULT_MAX_RETRY_DELAY_MS


@pytest.mark.parametrize(("answer", "delay"), [
    (reply(429, retry_after="99999999999999999999"), HOUR_MS),
    (reply(503, retry_after="9" * 5000), HOUR_MS),
    (reply(429, retry_after="Fri, 31 Dec 9999 23:59:59 GMT"), HOUR_MS),
    (reply(500, bullmq_proxy_retry="after=99999999999999999999999"), HOUR_MS),
    (reply(500, bullmq_proxy_retry="after=0000000000000000000000000001500"), 1500),
    (reply(429, retry_after="120"), 120_000),
])
def test_a_delay_the_endpoint_asks_for_is_capped(answer, delay):
    outcome = judge(answer, NOW)
    assert (outcome.verdict, outcome.delay_ms) == (Verdict.DELAY, delay)
    assert judge(answer, NOW, max_delay_ms=60_000).delay_ms == min(delay, 60_000)


@pytest.mark.parametrize("garbage", ["²", "٣", "1_000", "-5", "1e3", "Fri, 99 Foo 2023", "\x00"])
def test_a_retry_after_that_is_not_a_number_or_date_is_ignored(garbage):
    assert judge(reply(429, retry_after=garbage), NOW).verdict is Verdict.RETRY
    assert judge(reply(500, bullmq_proxy_retry=f"after={garbage}"), NOW).verdict is Verdict.RETRY


@pytest.mark.parametrize("body", [b"1e400", b"[" * 1000 + b"]" * 1000,
                                  b'{"a": "\\ud800"}', b"[" * 100_000 + b"]" * 100_000])
def test_a_json_answer_that_cannot_be_stored_fails_without_retry(body):
    outcome = judge(Reply(200, {"content-type": "application/json"}, body), NOW)
    assert outcome.verdict is Verdict.FAIL
    assert outcome.reason.startswith("endpoint answered 200 with JSON the proxy cannot store")
    assert "not retried, since the endpoint did the work" in outcome.reason


def test_a_json_answer_at_the_depth_limit_completes():
    body = b"[" * 128 + b"]" * 128
    assert judge(Reply(200, {"content-type": "application/json"}, body), NOW).verdict \
        is Verdict.COMPLETE


@pytest.mark.parametrize(("error", "reason"), [
    (ResponseNeverReceived([Failure(ConnectionDone())]),
     "endpoint call failed: the endpoint closed the connection without answering "
     "(Connection was closed cleanly.)"),
    (ResponseFailed([Failure(ConnectionLost("gone"))]),
     "endpoint call failed: the endpoint's answer was cut off (Connection to the other side "
     "was lost in a non-clean fashion: gone.)"),
    (ResponseNeverReceived([]),
     "endpoint call failed: the endpoint closed the connection without answering"),
    (DNSLookupError("no.such.host"), "endpoint call failed: DNS lookup failed: no.such.host."),
    (RuntimeError("two\nlines"), "endpoint call failed: two lines"),
])
def test_a_failed_call_is_described_in_a_sentence(error, reason):
    outcome = judge_error(error, 100)
    assert (outcome.verdict, outcome.reason) == (Verdict.RETRY, reason)
    assert "Failure" not in outcome.reason


def test_the_caller_caps_delays_with_its_setting():
    stub = StubTreq(StringStubbingResource(
        lambda *args: (429, {b"Retry-After": b"86400"}, b"busy")))
    capped = EndpointCaller(stub, Clock(), "mail", Endpoint(URL, "PUT", {}, 3000),
                            max_retry_delay_ms=5000)
    assert outcome_of(stub, capped.call("7", 1, BODY)).delay_ms == 5000


class Records(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[bytes, bytes]] = []

    def render(self, request):
        self.seen.append((request.getRequestHostname(), request.uri))
        return b"done"


@pytest.mark.parametrize(("url", "host", "target"), [
    # A Compose service name: IDNA refuses the underscore, HTTP and DNS names allow it.
    ("http://my_service:8080/hook", b"my_service", b"/hook"),
    ("http://Bücher.example/ä?x=ü", b"xn--bcher-kva.example", b"/%C3%A4?x=%C3%BC"),
])
def test_hosts_idna_refuses_or_must_encode_are_called(url, host, target):
    resource = Records()
    stub = StubTreq(resource)
    caller = EndpointCaller(stub, Clock(), "mail", Endpoint(url, "POST", {}, 1000))
    assert outcome_of(stub, caller.call("7", 1, BODY)).verdict is Verdict.COMPLETE
    assert outcome_of(stub, caller.call("8", 1, BODY)).verdict is Verdict.COMPLETE
    assert resource.seen == [(host, target)] * 2
