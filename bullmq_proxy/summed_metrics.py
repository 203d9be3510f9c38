"""``--processes N``: whichever process a scrape reaches answers for all N, summed.

Each process serves its own metrics (``Metrics.exposition``) on a unix socket in a directory
the first process creates; a scrape reads every other socket there and adds the samples up,
series by series. Counters and histograms add up, and so do most gauges (jobs in flight,
open sockets, memory, and for a breaker state the number of processes in it). A few gauges
say the same thing in every process and keep the largest value (workers registered: every
process runs every registered worker) or the smallest (the start time).
"""

from __future__ import annotations

import asyncio
import operator
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import UNIXClientEndpoint, UNIXServerEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from bullmq_proxy.bridge import as_future
from bullmq_proxy.logs import Logger

log = Logger(namespace="bullmq_proxy.summed_metrics")

METRICS_DIR_ENV = "BULLMQ_PROXY_METRICS_DIR"
READ_TIMEOUT_SECONDS = 2.0
LARGEST = frozenset({"bullmq_proxy_workers_registered", "bullmq_proxy_build_info",
                     "python_info", "process_max_fds"})
SMALLEST = frozenset({"process_start_time_seconds"})

Series = tuple[str, tuple[tuple[str, str], ...]]


class _Families:
    """What ``generate_latest`` needs of a registry."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


def summed(expositions: Sequence[bytes]) -> bytes:
    """Several processes' Prometheus text as one, each series combined across them."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[Series, float]] = {}
    for text in expositions:
        for family in text_string_to_metric_families(text.decode("utf-8")):
            if family.name not in families:
                families[family.name] = Metric(family.name, family.documentation, family.type)
                values[family.name] = {}
            combine: Callable[[float, float], float] = (
                max if family.name in LARGEST else min if family.name in SMALLEST
                else operator.add)
            series = values[family.name]
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                series[key] = combine(series[key], sample.value) if key in series \
                    else sample.value
    for name, metric in families.items():
        for (sample_name, labels), value in values[name].items():
            metric.add_sample(sample_name, dict(labels), value)
    return generate_latest(_Families(families.values()))  # type: ignore[arg-type]


class _Answer(Protocol):
    def connectionMade(self) -> None:
        self.transport.write(self.factory.exposition())  # type: ignore[attr-defined]
        self.transport.loseConnection()


class _Read(Protocol):
    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self.done: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self._chunks.append(data)

    def connectionLost(self, reason: Failure = ConnectionDone()) -> None:  # noqa: B008
        if reason.check(ConnectionDone):
            self.done.callback(b"".join(self._chunks))
        else:
            self.done.errback(reason)


class ProcessMetrics:
    """One process's part: its socket in ``directory``, and reading the others'."""

    def __init__(self, reactor: Any, directory: str, exposition: Callable[[], bytes]) -> None:
        self._reactor = reactor
        self._directory = Path(directory)
        self._own = self._directory / f"{os.getpid()}.sock"
        self._exposition = exposition

    def listener(self) -> Service:
        factory = Factory.forProtocol(_Answer)
        factory.exposition = self._exposition  # type: ignore[attr-defined]
        factory.noisy = False
        endpoint = UNIXServerEndpoint(self._reactor, str(self._own), mode=0o600)
        service = StreamServerEndpointService(endpoint, factory)
        service.setName("metrics of this process")
        return service

    async def others(self) -> list[bytes]:
        paths = sorted(path for path in self._directory.glob("*.sock") if path != self._own)
        answers = await asyncio.gather(*(self._read(path) for path in paths))
        return [answer for answer in answers if answer is not None]

    async def _read(self, path: Path) -> bytes | None:
        endpoint = UNIXClientEndpoint(self._reactor, str(path), timeout=READ_TIMEOUT_SECONDS)
        try:
            reading = await as_future(connectProtocol(endpoint, _Read()))
        except Exception as err:
            # A process that is starting, restarting or gone: the scrape goes on without it.
            log.debug("No metrics from {path}: {error}", path=str(path), error=err)
            return None
        done = reading.done.addTimeout(READ_TIMEOUT_SECONDS, self._reactor)
        try:
            return await as_future(done)
        except Exception as err:
            reading.transport.abortConnection()
            log.debug("No metrics from {path}: {error}", path=str(path), error=err)
            return None
