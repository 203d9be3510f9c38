"""``--processes N``: whichever process a scrape reaches, it answers for all of them."""

from __future__ import annotations

import shutil
import tempfile

import pytest
import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor

from benchmarks.processes import listening_sockets
from bullmq_proxy.metrics import Metrics
from bullmq_proxy.redis.embedded import free_port
from bullmq_proxy.summed_metrics import ProcessMetrics, summed
from tests.test_processes import wait_until
from tests.twistd_process import proxy_env, start_twistd

TOKEN = "metrics-processes"


def samples(text: bytes | str) -> dict[tuple[str, frozenset], float]:
    if isinstance(text, bytes):
        text = text.decode()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def _process(added: int, workers: int, in_flight: int, breaker: str, started: float) -> bytes:
    metrics = Metrics()
    metrics.jobs_added.labels("mail").inc(added)
    metrics.observe_request("/queues/{queueName}/jobs", b"POST", 200, 0.003)
    metrics.workers_registered.set(workers)
    metrics.jobs_in_flight.labels("mail").set(in_flight)
    metrics.circuit_breaker_state.labels("mail").state(breaker)
    text = metrics.exposition().decode()
    # Each process reports its own start; the deployment started with the first one.
    return "\n".join(
        f"process_start_time_seconds {started}" if line.startswith("process_start_time_seconds ")
        else line for line in text.splitlines()).encode() + b"\n"


def test_series_are_summed_or_kept_as_their_meaning_says():
    total = samples(summed([_process(3, 2, 1, "closed", 100.0),
                            _process(4, 2, 5, "open", 90.0)]))
    mail = frozenset({("queue", "mail")})
    assert total[("bullmq_proxy_jobs_added_total", mail)] == 7
    route = frozenset({("route", "/queues/{queueName}/jobs"), ("method", "POST")})
    assert total[("bullmq_proxy_http_request_duration_seconds_count", route)] == 2
    assert total[("bullmq_proxy_http_request_duration_seconds_bucket",
                  route | {("le", "0.005")})] == 2
    assert total[("bullmq_proxy_jobs_in_flight", mail)] == 6
    # Every process runs every registered worker: two workers, not four.
    assert total[("bullmq_proxy_workers_registered", frozenset())] == 2
    # A breaker state counts the processes whose breaker is in it.
    for state, processes in (("closed", 1), ("open", 1), ("half_open", 0)):
        labels = mail | {("bullmq_proxy_circuit_breaker_state", state)}
        assert total[("bullmq_proxy_circuit_breaker_state", labels)] == processes
    assert total[("process_start_time_seconds", frozenset())] == 90.0
    assert [v for (name, _), v in total.items() if name == "bullmq_proxy_build_info"] == [1]


def test_no_created_series():
    metrics = Metrics()
    metrics.jobs_added.labels("mail").inc()
    metrics.observe_request(None, b"GET", 404, 0.001)
    assert b"_created" not in metrics.exposition()


@pytest_twisted.ensureDeferred
async def test_a_scrape_reads_the_other_processes_sockets_and_skips_dead_ones():
    from tests.support import aio

    directory = tempfile.mkdtemp(prefix="bmp-test-")
    try:
        other = ProcessMetrics(reactor, directory, lambda: b"# other process\n")
        # Another process's socket, as if it were a sibling: only the file name differs.
        other._own = other._own.with_name("1.sock")
        listener = other.listener()
        listener.startService()
        (other._own.with_name("2.sock")).touch()  # a process that died without cleaning up
        this = ProcessMetrics(reactor, directory, lambda: b"")
        assert await aio(this.others()) == [b"# other process\n"]
        await listener.stopService()
        assert not other._own.exists()
        assert await aio(this.others()) == []
    finally:
        shutil.rmtree(directory)


@pytest.mark.slow
def test_two_processes_answer_every_scrape_with_their_sum(tmp_path, redis_url):
    port = free_port()
    (tmp_path / "tmp").mkdir()
    env = proxy_env(REDIS_URL=redis_url, AUTH_TOKENS=TOKEN, TMPDIR=str(tmp_path / "tmp"))
    proxy = start_twistd(["--processes", "2"], env, tmp_path, port)
    try:
        proxy.wait_ready()
        assert wait_until(lambda: listening_sockets(port) == 2)
        assert wait_until(lambda: samples(proxy.request("GET", "/metrics", token=TOKEN)[1]).get(
            ("bullmq_proxy_processes", frozenset())) == 2)
        # One request per connection: the kernel spreads them over both processes.
        for n in range(40):
            assert proxy.request("POST", "/queues/mail/jobs", [{"name": "j", "data": n}],
                                 TOKEN)[0] == 200
        route = frozenset({("route", "/queues/{queueName}/jobs"), ("method", "POST"),
                           ("status", "2xx")})
        for _ in range(8):
            status, text = proxy.request("GET", "/metrics", token=TOKEN)
            assert status == 200
            scraped = samples(text)
            assert scraped[("bullmq_proxy_processes", frozenset())] == 2
            assert scraped[("bullmq_proxy_jobs_added_total", frozenset({("queue", "mail")}))] \
                == 40
            assert scraped[("bullmq_proxy_http_requests_total", route)] == 40
    finally:
        proxy.stop()
    assert "Traceback" not in proxy.output()
    assert list((tmp_path / "tmp").iterdir()) == []  # the sockets' directory is gone
