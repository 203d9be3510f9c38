"""The endpoint HTTP client keeps its connections, even with endpoints that answer early."""

from __future__ import annotations

import pytest_twisted
import treq
from twisted.internet import protocol
from twisted.internet.endpoints import TCP4ServerEndpoint

from bullmq_proxy.workers.http_client import endpoint_client

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Type: text/plain\r\n\r\ndone"


class EarlyAnswer(protocol.Protocol):
    """Answers as soon as the request headers are in, before the body (as nginx's
    ``return 200`` does), then reads the body away."""

    def connectionMade(self) -> None:
        self.factory.connections += 1
        self.buffer = b""
        self.body_left = 0

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.body_left:
                taken = min(self.body_left, len(self.buffer))
                self.buffer = self.buffer[taken:]
                self.body_left -= taken
                if self.body_left:
                    return
            head, found, rest = self.buffer.partition(b"\r\n\r\n")
            if not found:
                return
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            self.transport.write(ANSWER)
            self.buffer, self.body_left = rest, length


class Counting(protocol.Factory):
    protocol = EarlyAnswer
    connections = 0


@pytest_twisted.ensureDeferred
async def test_calls_reuse_one_connection_when_the_endpoint_answers_before_the_body():
    from twisted.internet import reactor

    factory = Counting()
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    http, pool = endpoint_client(reactor)
    try:
        url = f"http://127.0.0.1:{port.getHost().port}/hook"
        for n in range(20):
            response = await http.request("POST", url, data=b'{"job":%d}' % n + b" " * 200_000)
            assert await treq.content(response) == b"done"
        assert factory.connections == 1
    finally:
        await pool.closeCachedConnections()
        await port.stopListening()
