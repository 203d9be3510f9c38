"""The lean HTTP/1.1 channel without sockets: bytes in, bytes out, a Clock for deadlines."""

from __future__ import annotations

import json
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from bullmq_proxy.http.channel import MAX_HEADER_BYTES, MAX_HEADERS, LeanChannel, LeanSite
from bullmq_proxy.http.gone import IGoneNotice

LIMIT = 1000
HEADERS_TIMEOUT = 30.0
IDLE_TIMEOUT = 75.0


class Echo(Resource):
    """Answers what it was asked, at once."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Any] = []

    def render(self, request: Any) -> bytes:
        self.seen.append(request)
        return json.dumps({
            "method": request.method.decode(), "path": request.path.decode(),
            "args": {k.decode(): [v.decode() for v in vs] for k, vs in request.args.items()},
            "body": request.content.read().decode(), "auth": request.getHeader("authorization"),
        }).encode()


class Later(Resource):
    """Answers when the test says so, in any order."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list[Any] = []

    def render(self, request: Any) -> Any:
        self.waiting.append(request)
        return NOT_DONE_YET


class Boom(Resource):
    isLeaf = True

    def render(self, request: Any) -> bytes:
        raise ZeroDivisionError("a bug")


class Chunks(Resource):
    """Writes its answer in two pieces without declaring a length."""

    isLeaf = True

    def render(self, request: Any) -> Any:
        request.setHeader("X-Note", "one\r\nInjected: yes")
        request.write(b"hello ")
        request.write(b"world")
        request.finish()
        return NOT_DONE_YET


@pytest.fixture
def tree() -> Resource:
    root = Resource()
    root.putChild(b"echo", Echo())
    root.putChild(b"later", Later())
    root.putChild(b"boom", Boom())
    root.putChild(b"chunks", Chunks())
    return root


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def site(tree: Resource, clock: Clock) -> LeanSite:
    return LeanSite(tree, clock, max_body_size=LIMIT, headers_timeout=HEADERS_TIMEOUT,
                    idle_timeout=IDLE_TIMEOUT)


def connect(site: LeanSite) -> tuple[LeanChannel, StringTransport]:
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5000))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.7", 40000))
    channel.makeConnection(transport)
    return channel, transport


def responses(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Split a byte stream of HTTP/1.1 responses (with Content-Length or chunked bodies)."""
    out = []
    while raw:
        head, _, raw = raw.partition(b"\r\n\r\n")
        status_line, *lines = head.decode().split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        status = int(status_line.split()[1])
        if "content-length" in headers:
            length = int(headers["content-length"])
            body, raw = raw[:length], raw[length:]
        elif headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size_line, _, raw = raw.partition(b"\r\n")
                size = int(size_line, 16)
                body, raw = body + raw[:size], raw[size + 2:]
                if size == 0:
                    break
        else:
            body = b""
        out.append((status, headers, body))
    return out


def only(transport: StringTransport) -> tuple[int, dict[str, str], Any]:
    [(status, headers, body)] = responses(transport.value())
    if "json" in headers.get("content-type", ""):
        return status, headers, json.loads(body)
    return status, headers, body


def test_a_request_is_answered_and_the_connection_kept(site):
    channel, transport = connect(site)
    channel.dataReceived(b"GET /echo?a=1&a=2&b= HTTP/1.1\r\nHost: x\r\n"
                         b"Authorization: Bearer t\r\n\r\n")
    status, headers, body = only(transport)
    assert status == 200
    assert json.loads(body) == {"method": "GET", "path": "/echo", "args": {"a": ["1", "2"],
                                "b": [""]}, "body": "", "auth": "Bearer t"}
    assert "date" in headers
    assert "connection" not in headers
    assert not transport.disconnecting
    transport.clear()
    channel.dataReceived(b"POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
    assert json.loads(only(transport)[2])["body"] == "hello"


def test_pipelined_requests_are_answered_in_order_and_reading_pauses(site, tree):
    channel, transport = connect(site)
    later = tree.children[b"later"]
    channel.dataReceived(b"GET /later HTTP/1.1\r\n\r\nGET /echo?n=2 HTTP/1.1\r\n\r\n"
                         b"GET /echo?n=3 HTTP/1.1\r\n\r\n")
    assert transport.value() == b""
    assert transport.producerState == "paused"
    assert len(later.waiting) == 1
    later.waiting[0].write(b"first")
    later.waiting[0].finish()
    answers = responses(transport.value())
    assert answers[0][2] == b"first"
    assert [json.loads(body)["args"]["n"] for _, _, body in answers[1:]] == [["2"], ["3"]]
    assert transport.producerState == "producing"


def test_a_chunked_body_is_read_whole(site):
    channel, transport = connect(site)
    channel.dataReceived(b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"3\r\nabc\r\n")
    channel.dataReceived(b"4;ext=1\r\ndefg\r\n0\r\nTrailer: x\r\n\r\n")
    assert json.loads(only(transport)[2])["body"] == "abcdefg"


def test_expect_100_continue_is_answered_before_the_body(site):
    channel, transport = connect(site)
    channel.dataReceived(b"POST /echo HTTP/1.1\r\nContent-Length: 2\r\n"
                         b"Expect: 100-continue\r\n\r\n")
    assert transport.value() == b"HTTP/1.1 100 Continue\r\n\r\n"
    transport.clear()
    channel.dataReceived(b"ok")
    assert json.loads(only(transport)[2])["body"] == "ok"


def test_a_declared_body_over_the_limit_is_413_at_once_without_100_continue(site, tree):
    channel, transport = connect(site)
    channel.dataReceived(b"POST /echo HTTP/1.1\r\nContent-Length: %d\r\n"
                         b"Expect: 100-continue\r\n\r\n" % (LIMIT + 1))
    status, headers, body = only(transport)
    assert status == 413
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    assert body["type"] == "/problems/payload-too-large"
    assert body["instance"] == "/echo"
    assert transport.disconnecting
    assert tree.children[b"echo"].seen == []


def test_a_chunked_body_over_the_limit_is_413_before_it_is_all_read(site, tree):
    channel, transport = connect(site)
    channel.dataReceived(b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (LIMIT // 2 + 1, b"x" * (LIMIT // 2 + 1))
    channel.dataReceived(chunk)
    assert transport.value() == b""
    channel.dataReceived(chunk)
    assert only(transport)[0] == 413
    assert transport.disconnecting
    channel.dataReceived(chunk * 10)  # ignored: the answer is given
    assert tree.children[b"echo"].seen == []


@pytest.mark.parametrize("pieces", [1, 50], ids=["at once", "trickled"])
def test_headers_over_16_kib_are_431(site, tree, pieces):
    channel, transport = connect(site)
    request = b"GET /echo HTTP/1.1\r\nX-Big: " + b"a" * MAX_HEADER_BYTES + b"\r\n\r\n"
    step = len(request) // pieces + 1
    for start in range(0, len(request), step):
        channel.dataReceived(request[start:start + step])
        if transport.value():
            break
    status, _, body = only(transport)
    assert status == 431
    assert body["type"] == "/problems/headers-too-large"
    assert transport.disconnecting
    assert tree.children[b"echo"].seen == []


def test_a_header_line_without_end_is_cut_off_near_the_limit(site):
    """llhttp keeps an unfinished line whole: the channel stops feeding it past the limit."""
    channel, transport = connect(site)
    channel.dataReceived(b"GET /echo HTTP/1.1\r\nX-Endless: ")
    fed = 0
    while not transport.value():
        channel.dataReceived(b"a" * 1024)
        fed += 1024
        assert fed <= 2 * MAX_HEADER_BYTES
    assert only(transport)[0] == 431


def test_too_many_headers_are_431(site):
    channel, transport = connect(site)
    channel.dataReceived(b"GET /echo HTTP/1.1\r\n"
                         + b"".join(b"X-%d: y\r\n" % n for n in range(MAX_HEADERS + 1)) + b"\r\n")
    assert only(transport)[0] == 431


@pytest.mark.parametrize("request_bytes", [
    # Request smuggling: a length and a chunked encoding at once.
    b"POST /echo HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\nGET /echo HTTP/1.1\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    b"POST /echo HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nabc",
    b"GET /echo HTTP/1.1\r\nX-Folded: a\r\n b\r\n\r\n",
    b"GET /echo HTTP/1.1\r\nBad Name: a\r\n\r\n",
    b"GET /echo HTTP/1.1\r\nX: a\x00b\r\n\r\n",
    b"NOT HTTP AT ALL\r\n\r\n",
    b"GET /echo HTTP/1.1\nHost: x\n\n",
], ids=["cl+te", "two lengths", "te not chunked", "folding", "space in name", "nul",
        "garbage", "bare lf"])
def test_malformed_http_is_400_json_and_closes(site, tree, request_bytes):
    channel, transport = connect(site)
    channel.dataReceived(request_bytes)
    status, headers, body = only(transport)
    assert status == 400
    assert headers["content-type"] == "application/problem+json"
    assert body["type"] == "/problems/invalid-http"
    assert transport.disconnecting
    assert tree.children[b"echo"].seen == []


def test_a_malformed_request_behind_a_pending_one_is_answered_after_it(site, tree):
    channel, transport = connect(site)
    channel.dataReceived(b"GET /later HTTP/1.1\r\n\r\nGET /echo HTTP/1.1\r\nBad Name: a\r\n\r\n")
    assert transport.value() == b""
    request = tree.children[b"later"].waiting[0]
    request.write(b"done")
    request.finish()
    first, second = responses(transport.value())
    assert (first[0], first[2]) == (200, b"done")
    assert second[0] == 400
    assert transport.disconnecting


def test_headers_trickled_past_the_deadline_get_408(site, clock):
    channel, transport = connect(site)
    for byte in b"GET /echo HTTP/1.1\r\nX-Slow: " + b"a" * 100:
        channel.dataReceived(bytes([byte]))
        clock.advance(1)
        if transport.value():
            break
    clock.advance(1)
    status, _, body = only(transport)
    assert status == 408
    assert body["type"] == "/problems/request-timeout"
    assert transport.disconnecting


def test_a_connection_that_sends_nothing_is_closed_after_the_headers_deadline(site, clock):
    _, transport = connect(site)
    clock.advance(HEADERS_TIMEOUT - 1)
    assert not transport.disconnecting
    clock.advance(2)
    assert transport.disconnecting
    assert transport.value() == b""


def test_an_idle_kept_alive_connection_is_closed_after_the_idle_timeout(site, clock):
    channel, transport = connect(site)
    channel.dataReceived(b"GET /echo HTTP/1.1\r\n\r\n")
    clock.advance(HEADERS_TIMEOUT + 1)
    assert not transport.disconnecting
    clock.advance(IDLE_TIMEOUT)
    assert transport.disconnecting


def test_a_stalled_body_gets_408(site, clock):
    channel, transport = connect(site)
    channel.dataReceived(b"POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
    clock.advance(IDLE_TIMEOUT + 2)
    assert only(transport)[0] == 408


def test_no_deadline_runs_while_the_proxy_is_answering(site, clock, tree):
    channel, transport = connect(site)
    channel.dataReceived(b"GET /later HTTP/1.1\r\n\r\n")
    clock.advance(IDLE_TIMEOUT * 3)
    assert not transport.disconnecting
    request = tree.children[b"later"].waiting[0]
    request.finish()
    assert only(transport)[0] == 200


def test_a_slow_client_never_delays_another(site, clock):
    slow, slow_transport = connect(site)
    slow.dataReceived(b"POST /echo HTTP/1.1\r\nContent-Le")
    fast, fast_transport = connect(site)
    fast.dataReceived(b"GET /echo HTTP/1.1\r\n\r\n")
    assert only(fast_transport)[0] == 200
    assert slow_transport.value() == b""


def test_http_1_0_closes_unless_kept_alive(site):
    channel, transport = connect(site)
    channel.dataReceived(b"GET /echo HTTP/1.0\r\n\r\n")
    assert only(transport)[1]["connection"] == "close"
    assert transport.disconnecting
    channel, transport = connect(site)
    channel.dataReceived(b"GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert only(transport)[0] == 200
    assert not transport.disconnecting


def test_connection_close_is_honoured(site):
    channel, transport = connect(site)
    channel.dataReceived(b"GET /echo HTTP/1.1\r\nConnection: close\r\n\r\n"
                         b"GET /echo HTTP/1.1\r\n\r\n")
    assert only(transport)[1]["connection"] == "close"
    assert transport.disconnecting


def test_a_resource_that_raises_gives_a_500_problem(site):
    channel, transport = connect(site)
    channel.dataReceived(b"GET /boom HTTP/1.1\r\n\r\n")
    status, _, body = only(transport)
    assert status == 500
    assert body["type"] == "/problems/internal"
    assert body["instance"].startswith("urn:uuid:")


def test_an_answer_without_a_length_is_chunked_and_headers_stay_one_line(site):
    channel, transport = connect(site)
    channel.dataReceived(b"GET /chunks HTTP/1.1\r\n\r\n")
    _, headers, body = only(transport)
    assert headers["transfer-encoding"] == "chunked"
    assert body == b"hello world"
    assert headers["x-note"] == "one  Injected: yes"
    assert "injected" not in headers


def test_head_answers_carry_no_body(site):
    channel, transport = connect(site)
    channel.dataReceived(b"HEAD /echo HTTP/1.1\r\n\r\nGET /echo HTTP/1.1\r\n\r\n")
    raw = transport.value()
    assert raw.count(b"HTTP/1.1 200") == 2
    assert raw.split(b"\r\n\r\n", 1)[1].startswith(b"HTTP/1.1 200")


def test_a_client_that_leaves_is_told_to_the_resource(site, tree):
    channel, _ = connect(site)
    channel.dataReceived(b"GET /later HTTP/1.1\r\n\r\n")
    request = tree.children[b"later"].waiting[0]
    outcome: list[Any] = []
    request.notifyFinish().addBoth(outcome.append)
    channel.connectionLost(Exception("gone"))
    assert request.channel is None
    assert len(outcome) == 1
    assert outcome[0].check(Exception)
    request.write(b"ignored")  # nowhere to go, and no error


def test_a_client_that_leaves_is_told_without_a_deferred_too(site, tree):
    channel, _ = connect(site)
    channel.dataReceived(b"GET /later HTTP/1.1\r\n\r\nGET /later HTTP/1.1\r\n\r\n")
    first = tree.children[b"later"].waiting[0]
    assert IGoneNotice.providedBy(first)
    told: list[Any] = []
    first.on_gone(told.append)
    first.finish()  # answered: whatever happens to the connection later is not a leave
    second = tree.children[b"later"].waiting[1]
    second.on_gone(told.append)
    channel.connectionLost(Exception("gone"))
    assert len(told) == 1
    assert told[0].check(Exception)
    second.on_gone(told.append)  # after the leave: told nothing more
    assert len(told) == 1


def test_a_header_that_is_not_utf8_reads_without_raising(site):
    channel, transport = connect(site)
    channel.dataReceived(b"GET /echo HTTP/1.1\r\nAuthorization: Bearer \xff\r\n\r\n")
    assert json.loads(only(transport)[2])["auth"] == "Bearer \ufffd"


def test_an_upgrade_the_resource_does_not_take_is_answered_then_the_connection_closes(site):
    channel, transport = connect(site)
    channel.dataReceived(b"GET /echo HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
                         b"GET /echo HTTP/1.1\r\n\r\n")
    assert only(transport)[0] == 200  # the bytes after the upgrade request are not HTTP
    assert transport.disconnecting


class Streams(Resource):
    """Writes as Server-Sent Events do: a producer registered, pieces as they come."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Any] = []

    def render(self, request: Any) -> Any:
        request.setHeader(b"content-type", b"text/event-stream")
        request.registerProducer(self, True)
        request.write(b": connected\n\n")
        self.requests.append(request)
        return NOT_DONE_YET

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


def test_a_streamed_answer_goes_out_piece_by_piece_with_its_producer(site, tree):
    streams = Streams()
    tree.putChild(b"events", streams)
    channel, transport = connect(site)
    channel.dataReceived(b"GET /events HTTP/1.1\r\n\r\n")
    assert transport.producer is streams
    head, _, first = transport.value().partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    assert first == b"d\r\n: connected\n\n\r\n"
    request = streams.requests[0]
    request.write(b"data: 1\n\n")
    request.unregisterProducer()
    request.finish()
    assert transport.producer is None
    assert responses(transport.value())[0][2] == b": connected\n\ndata: 1\n\n"
