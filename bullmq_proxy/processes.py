"""``--processes N``: N proxy processes on the same ports, for more than one core.

The first process (the one twistd runs) listens with SO_REUSEPORT and starts N-1 copies of
itself, each a whole proxy listening on the same ``reuseport:`` endpoints; the kernel spreads
connections between them. A copy reads its standard input, a pipe from the first process,
and stops when that pipe closes (exiting outright if that stop hangs), so copies never
outlive the first process, even a killed one.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.application.service import Service
from twisted.internet import protocol
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.error import ProcessExitedAlready
from twisted.python.failure import Failure

from bullmq_proxy.logs import Logger

log = Logger(namespace="bullmq_proxy.processes")

CHILD_ENV = "BULLMQ_PROXY_PARENT_PIPE"
# How long a copy's stop may take beyond the workers' grace period before it is killed.
STOP_MARGIN_SECONDS = 10.0
ORPHAN_DEADLINE_SECONDS = 30.0


class ProcessesError(ValueError):
    """The listeners or the Redis setting cannot be shared between processes."""


def reuseport_listeners(listen: Sequence[str]) -> tuple[str, ...]:
    """``tcp:`` descriptions as ``reuseport:`` ones with the same port and options."""
    shared = []
    for description in listen:
        kind, _, rest = description.partition(":")
        if kind == "reuseport":
            shared.append(description)
        elif kind == "tcp" and rest:
            shared.append(f"reuseport:{rest}")
        else:
            raise ProcessesError(
                f"--processes needs tcp: listeners to share; cannot share {description!r}"
            )
    return tuple(shared)


class _Child(protocol.ProcessProtocol):
    def __init__(self, number: int) -> None:
        self.number = number
        self.ended: Deferred[None] = Deferred()

    def processEnded(self, reason: Failure) -> None:
        log.info("Proxy process {number} ended: {why}", number=self.number,
                 why=reason.getErrorMessage())
        self.ended.callback(None)


class ChildProcessesService(Service):
    """Starts the copies with ``argv`` and stops them with the first process."""

    def __init__(self, reactor: Any, argv: Sequence[str], copies: int,
                 env: Mapping[str, str] | None = None, grace: float = 0.0) -> None:
        self.name = "processes"
        self._reactor = reactor
        self._argv = list(argv)
        self._copies = copies
        self._env = dict(env or {})
        self._kill_after = grace + STOP_MARGIN_SECONDS
        self._children: list[tuple[_Child, Any]] = []

    def startService(self) -> None:
        super().startService()
        env = {**os.environ, **self._env, CHILD_ENV: "1"}
        for number in range(1, self._copies + 1):
            child = _Child(number)
            transport = self._reactor.spawnProcess(
                child, self._argv[0], self._argv, env=env, childFDs={0: "w", 1: 1, 2: 2},
            )
            self._children.append((child, transport))
        log.info("Started {count} more proxy processes", count=self._copies)

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        waits = []
        for child, transport in self._children:
            if child.ended.called:
                continue
            waits.append(child.ended)
            try:
                transport.signalProcess("TERM")
            except ProcessExitedAlready:
                continue
            self._reactor.callLater(self._kill_after, _kill, transport)
        self._children = []
        return DeferredList(waits) if waits else succeed(None)


def _kill(transport: Any) -> None:
    with contextlib.suppress(ProcessExitedAlready):
        transport.signalProcess("KILL")


class _ParentPipe(protocol.Protocol):
    def __init__(self, watch: ParentWatchService) -> None:
        self._watch = watch

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self._watch.parent_gone()


class ParentWatchService(Service):
    """In a copy: stop when the first process's pipe on standard input closes.

    A graceful stop that hangs (a service waiting on a Redis that went away with the first
    process) must not leave an orphan holding the port: past a deadline the copy exits.
    """

    def __init__(self, reactor: Any, exit_now: Callable[[int], Any] = os._exit) -> None:
        self.name = "parent-watch"
        self._reactor = reactor
        self._exit_now = exit_now

    def startService(self) -> None:
        from twisted.internet.stdio import StandardIO

        super().startService()
        StandardIO(_ParentPipe(self), reactor=self._reactor)

    def parent_gone(self) -> None:
        if self.running:
            log.info("The first proxy process is gone; stopping")
            self._reactor.callLater(ORPHAN_DEADLINE_SECONDS, self._give_up)
            self._reactor.stop()

    def _give_up(self) -> None:
        log.error("Still stopping {seconds} s after the first process went; exiting",
                  seconds=ORPHAN_DEADLINE_SECONDS)
        self._exit_now(1)


def child_argv(listen: Sequence[str], options: Sequence[str]) -> list[str]:
    """The command line of a copy: this twistd plugin with the shared listeners."""
    argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
            "--nodaemon", "--pidfile=", "bullmq-proxy"]
    argv += list(options)
    for description in listen:
        argv += ["--listen", description]
    return argv
