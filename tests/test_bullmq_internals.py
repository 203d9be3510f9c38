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

    from bullmq_proxy.core.moves import CHANGE_DELAY_SCRIPT

    header = loadScript(CHANGE_DELAY_SCRIPT).split("]]", 1)[0]
    for line in ("KEYS[1] delayed key", "KEYS[2] meta key", "KEYS[3] marker key",
                 "KEYS[4] events stream", "ARGV[1] delay", "ARGV[2] timestamp",
                 "ARGV[3] the id of the job", "ARGV[4] job key"):
        assert line in header, line
def test_worker_builds_its_backend_through_the_module_function_the_proxy_replaces() -> None:
    import bullmq.worker

    assert "create_backend(" in inspect.getsource(Worker.__init__)
    assert callable(bullmq.worker.create_backend)
    assert isinstance(bullmq.worker.short_retry_delay, float)
    assert _params(RedisBackend.__init__) == [
        "self", "name", "connection", "blocking_connection", "prefix", "owns_connection"]
    assert "owns_connection" in inspect.getsource(RedisBackend.close)


def test_redis_connection_registers_its_scripts_in_load_commands() -> None:
    from bullmq.redis_connection import SCRIPT_DEFINITIONS, RedisConnection, loadScript

    assert "self.loadCommands()" in inspect.getsource(RedisConnection.__init__)
    assert {"moveToActive", "moveToFinished", "moveStalledJobsToWait", "extendLocks"} \
        <= set(SCRIPT_DEFINITIONS)
    assert "local rcall" in loadScript(SCRIPT_DEFINITIONS["moveToActive"])
    assert _params(RedisBackend.moveToActive) == ["self", "token", "opts"]
    assert _params(Worker.runStalledJobsCheck) == ["self"]


def test_lock_manager_members_the_idle_lock_manager_overrides() -> None:
    from bullmq.lock_manager import LockManager

    assert "self._renewal_task is not None" in inspect.getsource(LockManager.start)
    assert "self._extend_locks(" in inspect.getsource(LockManager._renewal_loop)
    assert _params(LockManager._extend_locks) == ["self", "job_ids"]
    assert _params(LockManager.track_job) == [
        "self", "job_id", "token", "ts", "should_create_controller"]
    assert "lockManager = LockManager(" in inspect.getsource(Worker.__init__)
