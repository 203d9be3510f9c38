"""The bullmq internals this proxy calls, pinned by shape.

setup.cfg bounds bullmq to the range these tests pass on. When a new bullmq renames or
reshapes one of them, this file fails first, by name, instead of a worker dying at run time.
"""

from __future__ import annotations

import inspect

import bullmq
from bullmq import Job, Queue, Worker
from bullmq.backends.redis_backend import RedisBackend
from bullmq.scripts import Scripts


def _params(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_queue_exposes_its_redis_backend_and_scripts() -> None:
    assert "self.scripts" in inspect.getsource(RedisBackend.__init__)
    assert "jobsOpts" in inspect.getsource(Queue.__init__)
    assert "backend" in inspect.getsource(Queue.__init__)
    for name in ("updateProgress", "addLog", "moveToCompleted", "setName", "clientName"):
        assert callable(getattr(RedisBackend, name)), name


def test_scripts_add_job_takes_a_pipeline() -> None:
    assert _params(Scripts.addJob) == ["self", "job", "pipe"]
    assert _params(Scripts.finishedErrors) == ["self", "opts"]


def test_worker_members_the_fetch_next_loop_uses() -> None:
    source = inspect.getsource(Worker.__init__)
    for member in ("lockManager", "processing", "jobs", "waiting", "forceClosing", "closing"):
        assert f"self.{member}" in source, member
    for method in ("getNextJob", "retryIfFailed", "nextJobFromJobData", "runStalledJobsCheck",
                   "waitForJob"):
        assert callable(getattr(Worker, method)), method
    assert _params(Worker.getNextJob) == ["self", "token"]
    assert _params(Worker.nextJobFromJobData)[:5] == [
        "self", "job_data", "job_id", "limit_until", "delay_until"]


def test_job_members_the_proxy_reads() -> None:
    source = inspect.getsource(Job.__init__)
    for member in ("deferredFailure", "attemptsStarted", "stalledCounter", "deduplication_id",
                   "repeatJobKey", "parentKey"):
        assert f"self.{member}" in source, member


def test_installed_bullmq_is_in_the_tested_range() -> None:
    major, minor, *_ = (int(part) for part in bullmq.__version__.split("."))
    assert (major, minor) == (3, 4)


def test_scripts_keys_the_layout_layer_relies_on() -> None:
    """redis/lua/pause.lua takes bullmq's pause keys in this order, and the prelude finds a
    queue's lists as ``<prefix>:<queue>:wait`` and ``...:paused``."""
    calls: list[tuple[list[str], list[str]]] = []

    class Recorder:
        def __call__(self, keys, args=None, client=None):
            calls.append((list(keys), list(args or [])))

    connection = type("Connection", (), {"conn": None, "commands": {"pause": Recorder()}})()
    scripts = Scripts("bull", "q", connection)
    scripts.pause(True)
    scripts.pause(False)
    assert calls == [
        (["bull:q:wait", "bull:q:paused", "bull:q:meta", "bull:q:prioritized",
          "bull:q:events", "bull:q:delayed", "bull:q:marker"], ["paused"]),
        (["bull:q:paused", "bull:q:wait", "bull:q:meta", "bull:q:prioritized",
          "bull:q:events", "bull:q:delayed", "bull:q:marker"], ["resumed"]),
    ]


def test_the_change_delay_script_takes_the_keys_the_proxy_sends() -> None:
    from bullmq.redis_connection import loadScript

    from bullmq_proxy.core.job_admin import CHANGE_DELAY_SCRIPT

    header = loadScript(CHANGE_DELAY_SCRIPT).split("]]", 1)[0]
    for line in ("KEYS[1] delayed key", "KEYS[2] meta key", "KEYS[3] marker key",
                 "KEYS[4] events stream", "ARGV[1] delay", "ARGV[2] timestamp",
                 "ARGV[3] the id of the job", "ARGV[4] job key"):
        assert line in header, line
