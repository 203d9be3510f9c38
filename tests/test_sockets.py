"""write_now: sent in the call on a plain TCP connection, in order behind buffered bytes."""

from __future__ import annotations

import pytest_twisted
from twisted.internet import defer, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.testing import StringTransport

from bullmq_proxy.sockets import write_now


class Gather(protocol.Protocol):
    def __init__(self, expected: int, done: defer.Deferred[bytes]) -> None:
        self.expected = expected
        self.done = done
        self.received = b""

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if len(self.received) >= self.expected and not self.done.called:
            self.done.callback(self.received)


@pytest_twisted.ensureDeferred
async def test_bytes_go_out_at_once_and_stay_in_order_behind_buffered_ones():
    from twisted.internet import reactor

    big = b"a" * 8_000_000  # more than the socket takes at once: Twisted buffers the rest
    expected = big + b"first" + b"second"
    done: defer.Deferred[bytes] = defer.Deferred()
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        protocol.Factory.forProtocol(lambda: Gather(len(expected), done)))
    client = await TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port).connect(
        protocol.Factory.forProtocol(protocol.Protocol))
    try:
        write_now(client.transport, b"")
        write_now(client.transport, big)
        assert client.transport.dataBuffer or client.transport._tempDataBuffer
        write_now(client.transport, b"first")  # behind what is buffered, not before it
        write_now(client.transport, b"second")
        assert await done == expected
        quick: defer.Deferred[bytes] = defer.Deferred()
        port2 = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            protocol.Factory.forProtocol(lambda: Gather(5, quick)))
        other = await TCP4ClientEndpoint(reactor, "127.0.0.1", port2.getHost().port).connect(
            protocol.Factory.forProtocol(protocol.Protocol))
        write_now(other.transport, b"hello")
        # Sent in the call: nothing was left for the reactor to write later.
        assert not other.transport._tempDataBuffer
        assert not other.transport.dataBuffer
        assert await quick == b"hello"
        other.transport.loseConnection()
        await port2.stopListening()
    finally:
        client.transport.loseConnection()
        await port.stopListening()


def test_other_transports_take_the_ordinary_path():
    transport = StringTransport()
    write_now(transport, b"through write")
    assert transport.value() == b"through write"
