"""``reuseport:`` listeners and ``--processes N``: real sockets and real twistd processes."""

from __future__ import annotations

import gc
import signal
import socket
import time
from pathlib import Path

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from benchmarks.processes import children, listening_sockets
from bullmq_proxy.processes import (
    ORPHAN_DEADLINE_SECONDS,
    ParentWatchService,
    ProcessesError,
    child_argv,
    reuseport_listeners,
)
from bullmq_proxy.redis.embedded import free_port
from bullmq_proxy.reuseport import ReusePortEndpoint, parse_endpoint
from tests.twistd_process import proxy_env, run_twistd, start_twistd

# Real twistd processes, installs or packaging steps: part of the slow subset.
pytestmark = pytest.mark.slow


TOKEN = "processes-token"


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def wait_until(condition, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_tcp_listeners_become_reuseport_ones():
    assert reuseport_listeners(["tcp:8080", "tcp:9090:interface=127.0.0.1",
                                "reuseport:7070"]) == (
        "reuseport:8080", "reuseport:9090:interface=127.0.0.1", "reuseport:7070")


@pytest.mark.parametrize("description", ["unix:/tmp/proxy.sock", "systemd:domain=INET:index=0",
                                         "tcp"])
def test_listeners_that_cannot_be_shared_are_refused(description):
    with pytest.raises(ProcessesError, match="needs tcp: listeners"):
        reuseport_listeners(["tcp:8080", description])


def test_child_argv_runs_this_plugin_with_the_shared_listeners():
    argv = child_argv(["reuseport:8080"], ["--queue-prefix=jobs"])
    assert argv[-4:] == ["bullmq-proxy", "--queue-prefix=jobs", "--listen", "reuseport:8080"]
    assert "--pidfile=" in argv


def test_endpoint_string_arguments():
    endpoint = parse_endpoint(reactor, "8080", interface="127.0.0.1", backlog="10")
    assert (endpoint._port, endpoint._interface, endpoint._backlog) == (8080, "127.0.0.1", 10)


@pytest_twisted.ensureDeferred
async def test_two_listeners_share_one_port_and_both_serve():
    port = free_port()
    root = Resource()
    root.putChild(b"", Data(b"hello", "text/plain"))
    ports = []
    try:
        for _ in range(2):
            ports.append(await ReusePortEndpoint(reactor, port, "127.0.0.1").listen(Site(root)))
        assert listening_sockets(port) == 2
        await ports.pop(0).stopListening()
        assert listening_sockets(port) == 1
        response = await treq.get(f"http://127.0.0.1:{port}/")
        assert await response.content() == b"hello"
    finally:
        for listening in ports:
            if listening.connected:
                await listening.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_port_held_without_reuseport_fails_the_listen():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(OSError, match="Address already in use"):
            await ReusePortEndpoint(reactor, port, "127.0.0.1").listen(Site(Resource()))


def test_processes_share_the_port_serve_and_stop_with_the_first(tmp_path, redis_url):
    port = free_port()
    env = proxy_env(REDIS_URL=redis_url, AUTH_TOKENS=TOKEN)
    proxy = start_twistd(["--processes", "2"], env, tmp_path, port)
    try:
        proxy.wait_ready()
        assert wait_until(lambda: listening_sockets(port) == 2)
        (child,) = children(proxy.process.pid)
        for n in range(6):
            status, body = proxy.request("POST", "/queues/shared/jobs",
                                         [{"name": "job", "data": n}], TOKEN)
            assert status == 200
            assert body[0]["data"] == n
        assert proxy.stop(signal.SIGTERM) == -signal.SIGTERM  # twistd re-raises its signal
        assert wait_until(lambda: not alive(child))
        assert listening_sockets(port) == 0
    finally:
        proxy.stop(signal.SIGKILL)


def test_copies_stop_when_the_first_process_is_killed(tmp_path, redis_url):
    port = free_port()
    env = proxy_env(REDIS_URL=redis_url, AUTH_TOKENS=TOKEN)
    proxy = start_twistd(["--processes", "3"], env, tmp_path, port)
    try:
        proxy.wait_ready()
        assert wait_until(lambda: listening_sockets(port) == 3)
        copies = children(proxy.process.pid)
        assert len(copies) == 2
        proxy.stop(signal.SIGKILL)
        assert wait_until(lambda: not any(alive(pid) for pid in copies))
        assert "The first proxy process is gone; stopping" in proxy.output()
    finally:
        proxy.stop(signal.SIGKILL)


@pytest.mark.parametrize(("args", "env_extra", "message"), [
    (["--processes", "0"], {"REDIS_URL": "redis://127.0.0.1:1"}, "at least 1"),
    (["--processes", "two"], {"REDIS_URL": "redis://127.0.0.1:1"}, "must be an integer"),
    (["--processes", "2", "--listen", "unix:proxy.sock"], {"REDIS_URL": "redis://127.0.0.1:1"},
     "needs tcp: listeners"),
    (["--processes", "2", "--listen", "tcp:0"], {}, "needs an external Redis"),
])
def test_processes_refuses_what_it_cannot_share(tmp_path, args, env_extra, message):
    env = proxy_env(AUTH_TOKENS=TOKEN, DATA_DIR=str(tmp_path / "data"), **env_extra)
    result = run_twistd(["bullmq-proxy", *args], env, tmp_path)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


def test_the_startup_heap_is_frozen_out_of_collections_and_young_objects_collected_less_often():
    from bullmq_proxy.tap import YOUNG_THRESHOLD, freeze_startup_heap

    thresholds = gc.get_threshold()
    gc.unfreeze()
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() > 1000
        assert gc.get_threshold() == (YOUNG_THRESHOLD, *thresholds[1:])
        assert thresholds[0] < YOUNG_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


class StoppingClock(Clock):
    stopped = 0

    def stop(self):
        self.stopped += 1


def test_a_copy_whose_stop_hangs_exits_at_the_deadline():
    clock, exits = StoppingClock(), []
    watch = ParentWatchService(clock, exit_now=exits.append)
    watch.running = True  # started; its standard input is the first process's pipe
    watch.parent_gone()
    assert clock.stopped == 1
    clock.advance(ORPHAN_DEADLINE_SECONDS - 1)
    assert exits == []
    clock.advance(1)
    assert exits == [1]


def test_a_copy_already_stopping_ignores_the_pipe():
    clock, exits = StoppingClock(), []
    watch = ParentWatchService(clock, exit_now=exits.append)
    watch.parent_gone()
    clock.advance(ORPHAN_DEADLINE_SECONDS)
    assert (clock.stopped, exits) == (0, [])
