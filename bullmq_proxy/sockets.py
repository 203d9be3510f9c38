"""Writing to a TCP connection at once.

Twisted's TCP transport never sends in ``write``: it buffers, asks the reactor to watch the
socket for writability, sends on the next poll and stops watching again; with the asyncio
reactor that is two ``epoll_ctl`` calls, a poll and a callback for every answer and every
endpoint call, about a fifth of the CPU of the lean HTTP layers (benchmarks/README.md).
``write_now`` sends what the kernel takes right away when nothing is buffered before it, and
leaves the rest, in order, to the transport.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp


def write_now(transport: Any, data: bytes) -> None:
    """``transport.write(data)``, sent in this call when the socket can take it."""
    # Only a plain TCP connection with nothing waiting in its buffers (Twisted's own
    # attributes; any other transport, TLS included, takes the ordinary path).
    if (
        type(transport) not in _PLAIN
        or transport.TLS
        or not transport.connected
        or transport.disconnecting
        or getattr(transport, "_writeDisconnected", True)
        or transport.dataBuffer
        or getattr(transport, "_tempDataBuffer", True)
    ):
        transport.write(data)
        return
    try:
        sent = transport.socket.send(data)
    except BlockingIOError:
        sent = 0
    except OSError:
        # Twisted notices the broken connection on its own path and reports it.
        transport.write(data)
        return
    if sent < len(data):
        transport.write(data[sent:])


_PLAIN = frozenset({tcp.Server, tcp.Client})
