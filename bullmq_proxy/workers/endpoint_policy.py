"""Where worker endpoints may be: the addresses the proxy refuses to call.

A token with the ``workers`` right chooses the URL the proxy POSTs jobs to and reads the
answer of, so the proxy must not become a way into what only it can reach. By default it
refuses link-local addresses (cloud metadata services among them: 169.254.169.254,
fd00:ec2::254) and its own listeners; ``ENDPOINT_POLICY=public-only`` also refuses private,
loopback and other non-public ranges; ``ENDPOINT_ALLOW`` names hosts that are always allowed.
Every spelling of an address is read as the address it is (``2130706433``, ``0x7f.1``,
``::ffff:169.254.169.254``, ``[fe80::1%eth0]``). The check runs at registration on the URL,
and at connect time on the address a host name resolved to (DNS rebinding).
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Iterable

import attrs

POLICIES = ("default", "public-only")
# Metadata services outside the link-local ranges.
METADATA = (ipaddress.ip_network("fd00:ec2::254/128"),)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_address(host: str) -> Address | None:
    """The IP address ``host`` spells, in any of the spellings a connect would accept; None
    for a host name."""
    text = host.strip("[]").split("%", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        try:
            # inet_aton reads what the C library does: 2130706433, 0x7f.1, 127.1...
            address = ipaddress.IPv4Address(socket.inet_aton(text))
        except (OSError, ValueError):
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@attrs.frozen
class EndpointPolicy:
    policy: str = "default"
    allow: frozenset[str] = frozenset()
    # The proxy's own listeners: (address or None for any, port).
    own: tuple[tuple[Address | None, int], ...] = ()

    def refusal(self, host: str, port: int, resolved: Iterable[str] = ()) -> str | None:
        """Why the proxy will not call ``host:port`` (checking ``resolved`` addresses too),
        or None."""
        if host.lower().rstrip(".") in self.allow:
            return None
        addresses = [a for a in (parse_address(host), *map(parse_address, resolved))
                     if a is not None]
        for address in addresses:
            why = self._refused(address, port)
            if why is not None:
                return f"{host} ({address}) {why}" if str(address) != host else f"{host} {why}"
        return None

    def _refused(self, address: Address, port: int) -> str | None:
        if address.is_link_local or any(address in net for net in METADATA):
            return "is a link-local or cloud metadata address"
        for own_address, own_port in self.own:
            if port == own_port and (own_address is None or own_address == address
                                     or address.is_loopback or address.is_unspecified):
                return "is this proxy's own listener"
        if self.policy == "public-only" and not address.is_global:
            return "is not a public address (ENDPOINT_POLICY=public-only)"
        if address.is_unspecified or address.is_multicast:
            return "is not an address an endpoint can have"
        return None


def _listener(description: str) -> tuple[Address | None, int] | None:
    """(interface or None for every one, port) of a ``tcp:``/``reuseport:``/``ssl:``
    listener description; None for other endpoints (unix sockets, systemd)."""
    kind, _, rest = description.partition(":")
    if kind not in ("tcp", "tcp6", "reuseport", "ssl"):
        return None
    fields = rest.split(":")
    try:
        port = int(fields[0].removeprefix("port="))
    except ValueError:
        return None
    interface = next((f.split("=", 1)[1] for f in fields[1:] if f.startswith("interface=")),
                     None)
    return (parse_address(interface) if interface else None), port


@functools.cache
def policy_of(policy: str, allow: tuple[str, ...], listen: tuple[str, ...]) -> EndpointPolicy:
    own = tuple(found for found in map(_listener, listen) if found is not None)
    return EndpointPolicy(policy, frozenset(host.lower().rstrip(".") for host in allow), own)
