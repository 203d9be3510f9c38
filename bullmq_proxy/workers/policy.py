"""What an endpoint's answer means for the job: the response-code table of docs/workers.md."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import attrs
from twisted.internet.defer import TimeoutError
from twisted.python.failure import Failure
from twisted.web._newclient import RequestTransmissionFailed
from twisted.web.client import ResponseFailed, ResponseNeverReceived
from twisted.web.error import SchemeNotSupported

from bullmq_proxy.errors import ProxyError
from bullmq_proxy.validation import parse_json

RETRY_HEADER = "bullmq-proxy-retry"
# Client errors that say "not now" rather than "never": they are retried like 5xx.
RETRYABLE_4XX = frozenset({408, 409, 425, 429})
# Statuses whose Retry-After delays the job without spending an attempt.
THROTTLING = frozenset({429, 503})
REASON_BODY_BYTES = 200
# The default cap of a delay an endpoint asks for (Retry-After, BullMQ-Proxy-Retry): such a
# delay spends no attempt, so an unbounded one could park a job for ever.
DEFAULT_MAX_RETRY_DELAY_MS = 3_600_000


class AnswerTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the endpoint's answer is larger than {limit} bytes")


class Verdict(enum.Enum):
    COMPLETE = "complete"
    ACCEPTED = "accepted"  # 202: the endpoint settles the job later through the job API
    RETRY = "retry"  # fail this attempt; BullMQ's attempts and backoff decide what follows
    FAIL = "fail"  # fail the job for good, whatever attempts are left
    DELAY = "delay"  # try again later without spending an attempt


@attrs.frozen
class Reply:
    """An endpoint's answer; header names lower-case, first value only."""

    status: int
    headers: Mapping[str, str]
    body: bytes


@attrs.frozen
class Outcome:
    verdict: Verdict
    value: Any = None
    reason: str = ""
    delay_ms: int = 0
    # Not part of the verdict: only metrics tell a timeout from other failed calls.
    timed_out: bool = attrs.field(default=False, eq=False)


def _digits(value: str) -> int | None:
    """A plain decimal count: ASCII digits only (``"²".isdigit()`` is true too)."""
    value = value.strip()
    if not (value.isascii() and value.isdigit()):
        return None
    value = value.lstrip("0") or "0"
    # Anything longer is past every cap anyway, and int() of a huge string is slow.
    return int(value) if len(value) <= 20 else 10**20


def _retry_after_ms(value: str | None, now: float) -> int | None:
    if value is None:
        return None
    seconds = _digits(value)
    if seconds is not None:
        return seconds * 1000
    try:
        when = parsedate_to_datetime(value.strip()).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0, int((when - now) * 1000))


def _override(value: str | None) -> Outcome | None:
    """``BullMQ-Proxy-Retry: never`` or ``after=<ms>``; anything else is ignored."""
    if value is None:
        return None
    value = value.strip().lower()
    if value == "never":
        return Outcome(Verdict.FAIL, reason="the endpoint asked not to retry")
    name, _, ms = value.partition("=")
    delay = _digits(ms) if name.strip() == "after" else None
    if delay is not None:
        return Outcome(Verdict.DELAY, delay_ms=delay)
    return None


def _well_formed(body: bytes) -> bool:
    """Is this JSON that a lenient reader takes (a lone surrogate, 1e400, deep nesting)
    rather than broken text?"""
    try:
        json.loads(body.decode("utf-8", "surrogatepass"))
    except RecursionError:
        return True
    except ValueError:
        return False
    return True


def _completed(reply: Reply) -> Outcome:
    if "application/json" not in reply.headers.get("content-type", "") \
            or not reply.body.strip():
        return Outcome(Verdict.COMPLETE, value=reply.body.decode("utf-8", "replace"))
    try:
        return Outcome(Verdict.COMPLETE, value=parse_json(reply.body))
    except ProxyError as err:
        if not _well_formed(reply.body):
            return Outcome(Verdict.RETRY, reason=f"{describe(reply)} (not valid JSON)")
        # The endpoint did the work: another attempt would only repeat it.
        detail = err.detail.replace("The request body", "it").rstrip(".")
        return Outcome(Verdict.FAIL, reason=f"endpoint answered {reply.status} with JSON the "
                       f"proxy cannot store as the return value ({detail}); not retried, "
                       "since the endpoint did the work")


def describe(reply: Reply) -> str:
    """Status and the first bytes of the body, for failedReason."""
    snippet = reply.body[:REASON_BODY_BYTES].decode("utf-8", "replace").strip()
    text = f"endpoint answered {reply.status}"
    return f"{text}: {snippet}" if snippet else text


def judge(reply: Reply, now: float,
          max_delay_ms: int = DEFAULT_MAX_RETRY_DELAY_MS) -> Outcome:
    """Decide from a complete answer; ``now`` (epoch seconds) resolves HTTP-date Retry-After,
    and a delay the endpoint asks for is capped at ``max_delay_ms``."""
    if reply.status == 202:
        return Outcome(Verdict.ACCEPTED)
    if 200 <= reply.status < 300:
        return _completed(reply)
    reason = describe(reply)
    override = _override(reply.headers.get(RETRY_HEADER))
    if override is not None:
        return attrs.evolve(override, reason=f"{reason} ({override.reason or 'retry later'})",
                            delay_ms=min(override.delay_ms, max_delay_ms))
    if reply.status in THROTTLING:
        delay = _retry_after_ms(reply.headers.get("retry-after"), now)
        if delay is not None:
            return Outcome(Verdict.DELAY, reason=reason, delay_ms=min(delay, max_delay_ms))
    if 400 <= reply.status < 500 and reply.status not in RETRYABLE_4XX:
        return Outcome(Verdict.FAIL, reason=reason)
    return Outcome(Verdict.RETRY, reason=reason)


def judge_error(err: BaseException, timeout_ms: int) -> Outcome:
    """No usable answer: a timeout or a connection failure (worth a retry), or an answer
    too large to keep."""
    if isinstance(err, TimeoutError):
        return Outcome(Verdict.RETRY, reason=f"endpoint did not answer within {timeout_ms} ms",
                       timed_out=True)
    if isinstance(err, AnswerTooLarge):
        # The same job would get the same answer again: not worth another attempt.
        return Outcome(Verdict.FAIL, reason=str(err))
    return Outcome(Verdict.RETRY, reason=f"endpoint call failed: {call_failure(err)}")


# Twisted's client wraps what went wrong in these, whose text is a list of Failure reprs.
WRAPPERS = {
    ResponseNeverReceived: "the endpoint closed the connection without answering",
    ResponseFailed: "the endpoint's answer was cut off",
    RequestTransmissionFailed: "the request could not be sent",
}


def call_failure(err: BaseException) -> str:
    """Why a call failed, as a sentence: the wrapper's meaning and the first reason inside."""
    for kind, meaning in WRAPPERS.items():
        if isinstance(err, kind):
            reasons = [r.value if isinstance(r, Failure) else r for r in err.reasons]
            inner = call_failure(reasons[0]) if reasons else ""
            return f"{meaning} ({inner})" if inner else meaning
    if isinstance(err, SchemeNotSupported):
        return f"the URL's scheme is not supported ({err})"
    text = " ".join(str(err).split())
    return text or err.__class__.__name__
