"""What an endpoint's answer means for the job: the response-code table of docs/workers.md."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import attrs
from twisted.internet.defer import TimeoutError

RETRY_HEADER = "bullmq-proxy-retry"
# Client errors that say "not now" rather than "never": they are retried like 5xx.
RETRYABLE_4XX = frozenset({408, 409, 425, 429})
# Statuses whose Retry-After delays the job without spending an attempt.
THROTTLING = frozenset({429, 503})
REASON_BODY_BYTES = 200


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


def _retry_after_ms(value: str | None, now: float) -> int | None:
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value) * 1000
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
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
    if name.strip() == "after" and ms.strip().isdigit():
        return Outcome(Verdict.DELAY, delay_ms=int(ms.strip()))
    return None


def _value(reply: Reply) -> Any:
    if "application/json" in reply.headers.get("content-type", "") and reply.body.strip():
        return json.loads(reply.body)
    return reply.body.decode("utf-8", "replace")


def describe(reply: Reply) -> str:
    """Status and the first bytes of the body, for failedReason."""
    snippet = reply.body[:REASON_BODY_BYTES].decode("utf-8", "replace").strip()
    text = f"endpoint answered {reply.status}"
    return f"{text}: {snippet}" if snippet else text


def judge(reply: Reply, now: float) -> Outcome:
    """Decide from a complete answer; ``now`` (epoch seconds) resolves HTTP-date Retry-After."""
    if reply.status == 202:
        return Outcome(Verdict.ACCEPTED)
    if 200 <= reply.status < 300:
        try:
            return Outcome(Verdict.COMPLETE, value=_value(reply))
        except ValueError:
            return Outcome(Verdict.RETRY, reason=f"{describe(reply)} (not valid JSON)")
    reason = describe(reply)
    override = _override(reply.headers.get(RETRY_HEADER))
    if override is not None:
        return attrs.evolve(override, reason=f"{reason} ({override.reason or 'retry later'})")
    if reply.status in THROTTLING:
        delay = _retry_after_ms(reply.headers.get("retry-after"), now)
        if delay is not None:
            return Outcome(Verdict.DELAY, reason=reason, delay_ms=delay)
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
    detail = str(err) or err.__class__.__name__
    return Outcome(Verdict.RETRY, reason=f"endpoint call failed: {detail}")
