"""How the router learns that a request's client left, on requests that can say so cheaply."""

from __future__ import annotations

from collections.abc import Callable

from twisted.python.failure import Failure
from zope.interface import Interface


class IGoneNotice(Interface):
    """A request that tells when its client leaves before the answer is finished without a
    Deferred: ``notifyFinish().addErrback(f)`` made and fired one per request, 2 % of an
    add's CPU, for an errback that almost never runs."""

    def on_gone(callback: Callable[[Failure], object]) -> None:
        """Call ``callback`` with the reason should the client leave before ``finish``."""
