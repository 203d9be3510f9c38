"""The stop order (docs/operations.md, "Shutdown"), in process and with a real ``twistd``:
/readyz turns 503 at once, workers stop taking jobs, calls in flight and jobs held after a 202
can still call back through the open listener, then the listeners close, then the Redis
clients, then the embedded redis-server."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
import pytest_twisted
from twisted.application.service import Service
from twisted.internet import defer, reactor, task

from bullmq_proxy.health import Readiness
from bullmq_proxy.processes import STOP_MARGIN_SECONDS, ChildProcessesService
from bullmq_proxy.redis.embedded import free_port
from bullmq_proxy.service import DrainService, SequentialMultiService
from tests.support import TOKEN, aio
from tests.twistd_process import TWISTD, TwistdProxy, proxy_env, start_twistd
from tests.workers_helpers import eventually, listen_endpoint

STOPPED_BY_TERM = -signal.SIGTERM


class Recorded(Service):
    """A service whose stop ends when the test says so."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self._log = log
        self.stopped: defer.Deferred[None] = defer.Deferred()

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        self._log.append(f"stop {self.name}")
        return self.stopped


def test_children_stop_one_after_another_last_added_first():
    log: list[str] = []
    top = SequentialMultiService()
    first, second, third = (Recorded(name, log) for name in ("first", "second", "third"))
    for service in (first, second, third):
        service.setServiceParent(top)
    top.startService()
    done = top.stopService()
    assert log == ["stop third"]
    third.stopped.callback(None)
    assert log == ["stop third", "stop second"]
    second.stopped.callback(None)
    assert log == ["stop third", "stop second", "stop first"]
    assert not done.called
    first.stopped.callback(None)
    assert done.called


def test_a_stop_that_fails_does_not_keep_the_next_ones_running():
    log: list[str] = []
    top = SequentialMultiService()
    first, second = Recorded("first", log), Recorded("second", log)
    first.setServiceParent(top)
    second.setServiceParent(top)
    top.startService()
    done = top.stopService()
    second.stopped.errback(RuntimeError("stuck"))
    assert log == ["stop second", "stop first"]
    first.stopped.callback(None)
    assert done.called
    assert done.result is None


@pytest_twisted.ensureDeferred
async def test_readiness_fails_once_draining_begins(redis_url):
    import redis.asyncio as aredis

    client = aredis.Redis.from_url(redis_url)
    readiness = Readiness(client)
    drain = DrainService(readiness)
    drain.startService()
    assert (await aio(readiness.run()))["shutdown"] == "ok"
    drain.stopService()
    checks = await aio(readiness.run())
    assert checks["shutdown"] == "the proxy is shutting down"
    assert checks["redis"] == "ok"
    await aio(client.aclose())


class _Copy:
    def __init__(self) -> None:
        self.signals: list[str] = []

    def signalProcess(self, name: str) -> None:
        self.signals.append(name)


class _SpawningClock(task.Clock):
    def __init__(self) -> None:
        super().__init__()
        self.copies: list[_Copy] = []

    def spawnProcess(self, protocol, *args, **kwargs) -> _Copy:
        self.copies.append(_Copy())
        return self.copies[-1]


def test_copies_get_the_workers_grace_before_they_are_killed():
    clock = _SpawningClock()
    copies = ChildProcessesService(clock, ["twistd"], 2, grace=30.0)
    copies.startService()
    copies.stopService()
    assert [copy.signals for copy in clock.copies] == [["TERM"], ["TERM"]]
    clock.advance(30.0 + STOP_MARGIN_SECONDS - 1)
    assert [copy.signals for copy in clock.copies] == [["TERM"], ["TERM"]]
    clock.advance(1)
    assert [copy.signals for copy in clock.copies] == [["TERM", "KILL"], ["TERM", "KILL"]]


def _positions(output: str, *lines: str) -> list[int]:
    positions = []
    for line in lines:
        assert line in output, f"{line!r} not logged:\n{output}"
        positions.append(output.index(line))
    return positions


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_a_held_job_calls_back_during_the_shutdown_and_everything_stops_in_order(
        tmp_path):
    async def accept(delivery):
        return 202, {}, b""

    endpoint = listen_endpoint(accept)
    port = free_port()
    env = proxy_env(AUTH_TOKENS=TOKEN, WORKER_SHUTDOWN_GRACE="60")
    proxy = start_twistd(["--data-dir", str(tmp_path / "data")], env, tmp_path, port)
    try:
        proxy.wait_ready()
        await eventually(lambda: proxy.request("GET", "/readyz")[0] == 200, what="readiness")
        registration = {"queue": "held", "endpoint": {"url": endpoint.url, "method": "POST"}}
        assert proxy.request("POST", "/workers", registration, TOKEN) == (200, "OK")
        _, jobs = proxy.request("POST", "/queues/held/jobs", [{"name": "w", "data": 1}], TOKEN)
        await eventually(lambda: endpoint.deliveries, what="the call")
        delivery = endpoint.deliveries[0].body
        assert delivery["job"]["id"] == jobs[0]["id"]

        proxy.process.send_signal(signal.SIGTERM)
        status, problem = proxy.request("GET", "/readyz", token=TOKEN)
        assert status == 503, problem
        assert problem["checks"]["shutdown"] == "the proxy is shutting down"
        # The endpoint finishes its work and settles the job on a new connection, well
        # after the signal: the listener is still open, and the worker waits for it.
        await _pause(1.5)
        settled = proxy.request("POST", f"/queues/held/jobs/{jobs[0]['id']}/complete",
                                {"returnvalue": "late"}, delivery["token"])
        assert settled == (200, "OK")
        await eventually(lambda: proxy.process.poll() is not None, timeout=30,
                         what="twistd to exit")
    finally:
        code = proxy.stop(signal.SIGKILL)
        await endpoint.close()
    output = proxy.output()
    assert code == STOPPED_BY_TERM, output
    assert "Traceback" not in output
    assert "still running after the grace period" not in output
    drain, workers, port_closed, clients, embedded = _positions(
        output, "Shutting down: /readyz answers 503", "Workers closed",
        f"Port {port} Closed", "Redis clients closed", "Embedded redis-server stopped")
    assert drain < workers < port_closed < clients < embedded

    # The settlement reached Redis: the next start on the same data finds the job completed.
    again = start_twistd(["--data-dir", str(tmp_path / "data")], env, tmp_path, free_port())
    try:
        again.wait_ready()
        status, job = again.request("GET", f"/queues/held/jobs/{jobs[0]['id']}", token=TOKEN)
        assert status == 200
        assert (job["state"], job["returnvalue"]) == ("completed", "late")
    finally:
        again.stop()


@pytest.mark.slow
def test_ctrl_c_at_the_terminal_stops_the_embedded_redis_last(tmp_path):
    """A Ctrl-C signals the terminal's whole foreground process group, redis-server too."""
    port = free_port()
    log_path = tmp_path / "twistd.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*TWISTD, "--pidfile=", "-n", "bullmq-proxy", "--listen", f"tcp:{port}",
             "--data-dir", str(tmp_path / "data")],
            env=proxy_env(AUTH_TOKENS=TOKEN), cwd=tmp_path, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)
    proxy = TwistdProxy(process, port, log_path)
    try:
        proxy.wait_ready()
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(30) == -signal.SIGINT
    finally:
        proxy.stop(signal.SIGKILL)
    output = proxy.output()
    # redis-server logs the signals it gets; the SIGTERM of its orderly stop is expected.
    assert not [line for line in output.splitlines()
                if "redis-server: " in line and "SIGINT" in line]
    workers, clients, embedded = _positions(
        output, "Workers closed", "Redis clients closed", "Embedded redis-server stopped")
    assert workers < clients < embedded


async def _pause(seconds: float) -> None:
    await task.deferLater(reactor, seconds)
