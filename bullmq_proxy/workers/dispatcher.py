"""Calls a worker's endpoint for one job and settles the job from the answer.

``EndpointCaller`` is plain Twisted (treq, an injected reactor), so the HTTP side is tested
with StubTreq and a Clock; ``Dispatcher`` is the bullmq processor that turns the outcome into
BullMQ's own moves (complete, fail, unrecoverable fail, delay without spending an attempt).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import attrs
import treq
from bullmq import Job
from bullmq.custom_errors import DelayedError, UnrecoverableError
from hyperlink import EncodedURL
from twisted.internet.defer import Deferred, TimeoutError
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from bullmq_proxy.bridge import as_future
from bullmq_proxy.core import moves
from bullmq_proxy.deadlines import SharedDeadline
from bullmq_proxy.encoding import encode_json
from bullmq_proxy.jobs import job_json
from bullmq_proxy.logs import Logger
from bullmq_proxy.workers.breaker import CircuitBreaker
from bullmq_proxy.workers.checked_headers import (
    CheckedHeaders,
    FirstValues,
    block_of,
    canonical_name,
    single_line,
)
from bullmq_proxy.workers.http_client import NO_COOKIES, EndpointURL
from bullmq_proxy.workers.metadata import Endpoint
from bullmq_proxy.workers.policy import (
    DEFAULT_MAX_RETRY_DELAY_MS,
    AnswerTooLarge,
    Outcome,
    Reply,
    Verdict,
    judge,
    judge_error,
)
from bullmq_proxy.workers.settlement import DeadlinePassed, Settled, Settlements
from bullmq_proxy.workers.signing import signature_headers

log = Logger(namespace="bullmq_proxy.workers.dispatcher")


CallObserver = Callable[[str, str, float], None]
"""Told (queue, outcome, seconds) after every endpoint call; see ``outcome_label``."""

OUTCOME_LABELS = {Verdict.COMPLETE: "completed", Verdict.ACCEPTED: "accepted",
                  Verdict.FAIL: "failed", Verdict.DELAY: "delayed", Verdict.RETRY: "retried"}


def outcome_label(outcome: Outcome) -> str:
    return "timed_out" if outcome.timed_out else OUTCOME_LABELS[outcome.verdict]


class HTTPClient(Protocol):
    """What the dispatcher needs of treq: ``treq.client.HTTPClient`` and ``StubTreq`` fit."""

    def request(self, method: str, url: EncodedURL, **kwargs: Any) -> Deferred[IResponse]: ...


class EndpointFailed(Exception):
    """This attempt failed; the message becomes the job's failedReason."""


@attrs.define
class LiveState:
    """What ``GET /workers/:queue`` shows of a running worker."""

    in_flight: int = 0
    completed: int = 0
    failed: int = 0
    settled: int = 0  # answered 202, then completed or failed through the job API
    last_error: str | None = None
    last_error_at: float | None = None
    # Errors of the worker itself (fetching jobs, moving them), not of the endpoint.
    worker_errors: int = 0
    last_worker_error: str | None = None
    last_worker_error_at: float | None = None

    def worker_failed(self, error: BaseException, now: float) -> None:
        self.worker_errors += 1
        self.last_worker_error = " ".join(f"{error.__class__.__name__}: {error}".split())
        self.last_worker_error_at = now


def _timed_out(result: Any, timeout: float) -> Failure:
    """Whatever the cancelled request failed with (the agent wraps it), it was the timeout."""
    return Failure(TimeoutError(f"no answer within {timeout} s"))


JOB_ID = canonical_name(b"BullMQ-Proxy-Job-Id")
ATTEMPT = canonical_name(b"BullMQ-Proxy-Attempt")
IDEMPOTENCY_KEY = canonical_name(b"Idempotency-Key")

# What a return value may weigh: the proxy's own request body limit by default.
MAX_ANSWER_BYTES = 10 * 1024 * 1024


class EndpointCaller:
    """One HTTP call per job attempt, bounded by the endpoint's timeout."""

    def __init__(
        self, http: HTTPClient, reactor: Any, queue: str, endpoint: Endpoint,
        signing_secrets: tuple[str, ...] = (), max_answer_bytes: int = MAX_ANSWER_BYTES,
        max_retry_delay_ms: int = DEFAULT_MAX_RETRY_DELAY_MS,
    ) -> None:
        self._http = http
        self._reactor = reactor
        self._queue = queue
        self._endpoint = endpoint
        self._url = EndpointURL.of(endpoint.url)
        self._fixed = block_of({"Content-Type": "application/json", **endpoint.headers})
        self._deadline = SharedDeadline(reactor, endpoint.timeout_ms / 1000)
        self._secrets = endpoint.signing_secrets or signing_secrets
        self._max_answer_bytes = max_answer_bytes
        self._max_retry_delay_ms = max_retry_delay_ms

    def headers(self, job_id: str, attempt: int, body: bytes) -> Headers:
        block = {name: list(values) for name, values in self._fixed.items()}
        key = f"{self._queue}:{job_id}"
        block[JOB_ID] = [single_line(job_id.encode("utf-8"))]
        block[ATTEMPT] = [b"%d" % attempt]
        block[IDEMPOTENCY_KEY] = [single_line(key.encode("utf-8"))]
        if self._secrets:
            # The id stays the same across attempts, as Standard Webhooks asks of retries.
            block.update(block_of(signature_headers(
                self._secrets, key, int(self._reactor.seconds()), body)))
        return CheckedHeaders.owning(block)

    def call(self, job_id: str, attempt: int, body: bytes) -> Deferred[Outcome]:
        """Always succeeds with an ``Outcome``: failures to answer are outcomes too."""
        d = self._http.request(
            self._endpoint.method,
            self._url,
            data=body,
            headers=self.headers(job_id, attempt, body),
            # _read consumes the body at once: treq's buffering layer would only add work.
            unbuffered=True,
            # A redirect could lead the call anywhere, past the endpoint policy's check of
            # the registered URL: a 3xx is the endpoint's answer, judged as such.
            allow_redirects=False,
            cookies=NO_COOKIES,
        )
        d.addCallback(self._read)
        # Covers the body as well as the status line: a server trickling bytes still times out.
        timed_out: list[bool] = []

        def expire() -> None:
            timed_out.append(True)
            d.cancel()

        def settled(result: Reply | Failure) -> Outcome:
            self._deadline.discard(d)
            if timed_out:
                result = _timed_out(result, self._deadline.limit)
            if isinstance(result, Failure):
                return judge_error(result.value, self._endpoint.timeout_ms)
            return judge(result, self._reactor.seconds(), self._max_retry_delay_ms)

        self._deadline.add(d, expire)
        d.addBoth(settled)
        return d

    def _read(self, response: IResponse) -> Deferred[Reply]:
        chunks: list[bytes] = []
        size = 0

        def collect(chunk: bytes) -> None:
            nonlocal size
            size += len(chunk)
            if size > self._max_answer_bytes:
                # treq drops the connection when the collector raises.
                raise AnswerTooLarge(self._max_answer_bytes)
            chunks.append(chunk)

        d = treq.collect(response, collect)
        d.addCallback(lambda _: Reply(response.code, FirstValues(response.headers),
                                      b"".join(chunks)))
        return d


class Dispatcher:
    """The bullmq processor of one HTTP worker."""

    def __init__(
        self, caller: EndpointCaller, queue: str, breaker: CircuitBreaker,
        settlements: Settlements, async_timeout_ms: int, observe: CallObserver | None = None,
    ) -> None:
        self._caller = caller
        self._observe = observe
        self._queue = queue
        self.breaker = breaker
        self._settlements = settlements
        self._async_timeout_ms = async_timeout_ms
        self.state = LiveState()

    async def __call__(self, job: Job, token: str) -> Any:
        if not self.breaker.allow():
            # The endpoint is failing: let the job wait, without spending an attempt.
            await self._delay(job, token, int(self.breaker.retry_in() * 1000))
            raise DelayedError("the endpoint's circuit is open")
        body = encode_json({"job": job_json(job), "token": token})
        self.state.in_flight += 1
        started = time.monotonic()
        try:
            outcome = await as_future(
                self._caller.call(str(job.id), job.attemptsMade + 1, body)
            )
        finally:
            self.state.in_flight -= 1
        if self._observe is not None:
            self._observe(self._queue, outcome_label(outcome), time.monotonic() - started)
        self.breaker.record(outcome.verdict is not Verdict.RETRY)
        return await self._settle(job, token, outcome)

    async def _hold(self, job: Job, token: str) -> Any:
        """Keep the job active (its lock renewed) until the endpoint settles it."""
        try:
            await self._settlements.hold(self._queue, job, token, self._async_timeout_ms)
        except Settled:
            self.state.settled += 1
            # Already finished through the job API: bullmq must not move it again, and a
            # DelayedError is how a processor says so.
            raise DelayedError("settled through the job API") from None
        except DeadlinePassed:
            reason = "endpoint accepted the job (202) but did not settle it in time"
            self.state.failed += 1
            self.state.last_error = reason
            self.state.last_error_at = time.time()
            raise EndpointFailed(reason) from None

    @staticmethod
    async def _delay(job: Job, token: str, delay_ms: int) -> None:
        await moves.delay(job, token, moves.now_ms() + delay_ms)

    async def _settle(self, job: Job, token: str, outcome: Outcome) -> Any:
        if outcome.verdict is Verdict.COMPLETE:
            self.state.completed += 1
            return outcome.value
        if outcome.verdict is Verdict.ACCEPTED:
            return await self._hold(job, token)
        self.state.failed += 1
        self.state.last_error = outcome.reason
        self.state.last_error_at = time.time()
        log.debug("Job {job_id} of {queue}: {verdict} ({reason})", job_id=job.id,
                  queue=self._queue, verdict=outcome.verdict.value, reason=outcome.reason)
        if outcome.verdict is Verdict.DELAY:
            await self._delay(job, token, outcome.delay_ms)
            raise DelayedError(outcome.reason)
        if outcome.verdict is Verdict.FAIL:
            raise UnrecoverableError(outcome.reason)
        raise EndpointFailed(outcome.reason)
