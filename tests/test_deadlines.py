"""One timer for many waits that share a time limit: each still expires at its own
deadline, in order, and a wait that ended is never expired."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from bullmq_proxy.deadlines import SharedDeadline


def shared() -> tuple[Clock, SharedDeadline, list[str]]:
    """A clock, a one-second limit on it, and where the expiries note themselves."""
    clock = Clock()
    return clock, SharedDeadline(clock, 1.0), []


def test_each_entry_expires_at_its_own_deadline_on_one_timer():
    clock, deadline, expired = shared()
    for name in "abc":
        deadline.add(name, lambda name=name: expired.append(name))
        clock.advance(0.25)
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(0.249)  # a at 0.999
    assert expired == []
    clock.advance(0.002)
    assert expired == ["a"]
    clock.advance(0.25)
    assert expired == ["a", "b"]
    clock.advance(0.25)
    assert expired == ["a", "b", "c"]
    assert len(deadline) == 0
    assert clock.getDelayedCalls() == []


def test_a_discarded_entry_never_expires_and_the_next_keeps_its_deadline():
    clock, deadline, expired = shared()
    deadline.add("a", lambda: expired.append("a"))
    clock.advance(0.5)
    deadline.add("b", lambda: expired.append("b"))
    deadline.discard("a")
    deadline.discard("unknown")
    clock.advance(0.6)  # a's deadline passed: the timer fires, finds b not yet due
    assert expired == []
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(0.4)
    assert expired == ["b"]


def test_an_entry_added_again_keeps_its_first_deadline():
    clock, deadline, expired = shared()
    deadline.add("a", lambda: expired.append("first"))
    clock.advance(0.9)
    deadline.add("a", lambda: expired.append("second"))
    clock.advance(0.2)
    assert expired == ["first"]


def test_entries_after_an_idle_spell_get_a_new_timer():
    clock, deadline, expired = shared()
    deadline.add("a", lambda: None)
    deadline.discard("a")
    clock.advance(5)  # the timer fired and found nothing
    assert clock.getDelayedCalls() == []
    deadline.add("b", lambda: expired.append("b"))
    clock.advance(0.999)
    assert expired == []
    clock.advance(0.002)
    assert expired == ["b"]


def test_a_failing_expiry_is_logged_and_the_others_still_expire():
    clock, deadline, expired = shared()

    def broken() -> None:
        raise RuntimeError("expiry bug")

    deadline.add("a", broken)
    deadline.add("b", lambda: expired.append("b"))
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        clock.advance(1.0)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert expired == ["b"]
    [failure] = [e["log_failure"] for e in events if "log_failure" in e]
    assert failure.check(RuntimeError)


def test_an_expiry_that_adds_an_entry_leaves_one_timer_for_the_oldest():
    clock, deadline, expired = shared()

    def again() -> None:  # as a timed-out call whose failure starts the next attempt
        expired.append("a")
        deadline.add("retry", lambda: expired.append("retry"))

    deadline.add("a", again)
    clock.advance(0.5)
    deadline.add("b", lambda: expired.append("b"))
    clock.advance(0.5)
    assert expired == ["a"]
    assert len(clock.getDelayedCalls()) == 1
    assert clock.getDelayedCalls()[0].getTime() == 1.5  # b's deadline, not the retry's
    clock.advance(0.5)
    assert expired == ["a", "b"]
    clock.advance(0.5)
    assert expired == ["a", "b", "retry"]
    assert clock.getDelayedCalls() == []
