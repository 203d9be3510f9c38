"""A TCP server endpoint whose socket has SO_REUSEPORT, so several proxy processes can listen
on one port and the kernel spreads the connections between them.

The proxy keeps no state outside Redis, so N processes behind one port behave as one proxy
with N times the CPU. Endpoint string: ``reuseport:PORT[:interface=ADDR][:backlog=N]``.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.protocol import Factory
from zope.interface import implementer

DEFAULT_BACKLOG = 1024


def reuseport_socket(port: int, interface: str, backlog: int) -> socket.socket:
    """A listening, non-blocking socket that other processes may bind to as well."""
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((interface, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


@implementer(IStreamServerEndpoint)
class ReusePortEndpoint:
    def __init__(
        self, reactor: Any, port: int, interface: str = "", backlog: int = DEFAULT_BACKLOG
    ) -> None:
        self._reactor = reactor
        self._port = port
        self._interface = interface
        self._backlog = backlog

    def listen(self, protocolFactory: Factory) -> Deferred[IListeningPort]:
        try:
            sock = reuseport_socket(self._port, self._interface, self._backlog)
        except OSError as err:
            return fail(err)
        with sock:
            # adoptStreamPort duplicates the descriptor; ours is closed on leaving.
            listening = self._reactor.adoptStreamPort(sock.fileno(), sock.family,
                                                      protocolFactory)
        return succeed(listening)


def parse_endpoint(
    reactor: Any, port: str, interface: str = "", backlog: str = str(DEFAULT_BACKLOG)
) -> ReusePortEndpoint:
    """``reuseport:PORT[:interface=ADDR][:backlog=N]`` as Twisted's string parser passes it."""
    return ReusePortEndpoint(reactor, int(port), interface, int(backlog))
