"""What a socket's handler looks like, whatever the socket is for."""

from __future__ import annotations

from typing import Any

import attrs
from zope.interface import Interface

from bullmq_proxy.rights import Principal


@attrs.define
class Admission:
    """Whom a socket was opened for: the token (checked again when the token file is
    reloaded) and what it may do (kept up to date with the reloads)."""

    token: str
    principal: Principal


class IChannel(Interface):
    """The socket as a session sees it."""

    def send(payload: bytes) -> None:  # type: ignore[misc]
        """Queue one text frame for the client (subject to flow control)."""

    def hold_reading(reason: str, holding: bool) -> None:  # type: ignore[misc]
        """Stop (or resume) reading the client's frames for ``reason``."""


class ISession(Interface):
    """Serves one open socket."""

    def received(payload: bytes) -> None:  # type: ignore[misc]
        """One complete message from the client."""

    def congested(paused: bool) -> None:  # type: ignore[misc]
        """The client stopped (or resumed) reading what we send."""

    def closed() -> Any:  # type: ignore[misc]
        """The socket is gone: release everything; returns an awaitable that is done when
        the session's resources are."""
