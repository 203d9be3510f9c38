"""Endpoints that hang, reset, trickle, answer without end, or answer broken JSON: each job
ends as docs/workers.md's response-code table says, and none stays active for ever."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import protocol, reactor

from tests.support import make_config, start_live_proxy
from tests.workers_helpers import add_job, finished, register

pytestmark = pytest.mark.slow


class Misbehaving(protocol.Protocol):
    """One way to answer an endpoint call badly, chosen by the factory."""

    def dataReceived(self, data: bytes) -> None:
        if getattr(self, "_started", False):
            return
        self._started = True
        getattr(self, self.factory.kind)()

    def hang(self) -> None:
        """Reads the call, never answers."""

    def reset(self) -> None:
        self.transport.abortConnection()

    def trickle(self) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
        self._bytes = iter(head + b"x" * 1000)
        self._drip()

    def _drip(self) -> None:
        byte = next(self._bytes, None)
        if byte is not None and self.transport.connected:
            self.transport.write(bytes([byte]))
            reactor.callLater(0.2, self._drip)

    def endless(self) -> None:
        self.transport.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        self._flood()

    def _flood(self) -> None:
        if self.transport.connected:
            chunk = b"x" * 65536
            self.transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            reactor.callLater(0, self._flood)

    def broken_json(self) -> None:
        body = b'{"half": '
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        self._started = False  # a whole answer: the kept connection may carry the next call


@pytest_twisted.async_yield_fixture
async def live(redis_url):
    proxy = await start_live_proxy(make_config(redis_url, worker_stalled_interval=1000,
                                               worker_lock_duration=2000))
    yield proxy
    await proxy.stop()


@pytest.mark.parametrize(("kind", "reason"), [
    ("hang", "did not answer within"),
    ("reset", "closed the connection"),
    ("trickle", "did not answer within"),
    ("endless", "1048576"),
    ("broken_json", "not valid JSON"),
])
@pytest_twisted.ensureDeferred
async def test_each_bad_endpoint_ends_its_job(live, kind, reason):
    factory = protocol.Factory.forProtocol(Misbehaving)
    factory.kind = kind
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    queue = f"bad-{kind.replace('_', '-')}"
    try:
        await register(live, f"http://127.0.0.1:{port.getHost().port}/", queue=queue,
                       timeout=1000)
        job = await finished(live, await add_job(live, queue=queue, opts={"attempts": 2}),
                             queue=queue)
        assert job["state"] == "failed", job
        assert reason in job["failedReason"], job["failedReason"]
    finally:
        await port.stopListening()
