"""GET /metrics: Prometheus text, bounded labels, an optional token, one registry per proxy."""

from __future__ import annotations

import pytest
import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families

from bullmq_proxy.metrics import Metrics, method_label, status_class
from bullmq_proxy.redis.embedded import free_port
from tests.redis_process import start_redis
from tests.support import AUTH, make_config, start_proxy


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a scrape, keyed by (name, labels)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scrape: dict, name: str, **labels: str) -> float | None:
    return scrape.get((name, frozenset(labels.items())))


async def scrape(proxy, headers=None) -> dict:
    status, body, response_headers = await proxy.request("GET", "/metrics",
                                                         headers=headers or AUTH)
    assert status == 200, body
    assert response_headers.getRawHeaders("content-type") == [
        "text/plain; version=0.0.4; charset=utf-8"
    ]
    return samples(body)


@pytest_twisted.ensureDeferred
async def test_metrics_are_prometheus_text_with_every_family(proxy):
    status, body, _ = await proxy.request("GET", "/metrics", headers=AUTH)
    assert status == 200
    names = {family.name for family in text_string_to_metric_families(body)}
    assert {
        "bullmq_proxy_http_requests", "bullmq_proxy_http_request_duration_seconds",
        "bullmq_proxy_jobs_added", "bullmq_proxy_endpoint_calls",
        "bullmq_proxy_endpoint_call_duration_seconds", "bullmq_proxy_jobs_in_flight",
        "bullmq_proxy_workers_registered", "bullmq_proxy_websocket_connections",
        "bullmq_proxy_redis_command_errors", "bullmq_proxy_redis_reconnects",
        "bullmq_proxy_circuit_breaker_state", "bullmq_proxy_build_info",
    } <= names


@pytest_twisted.ensureDeferred
async def test_requests_are_counted_by_route_template_not_raw_path(proxy):
    await proxy.request("POST", "/queues/mail/jobs", json_body=[{"name": "a", "data": 1}],
                        headers=AUTH)
    for job_id in ("1", "2", "3"):
        await proxy.request("GET", f"/queues/mail/jobs/{job_id}", headers=AUTH)
    scraped = await scrape(proxy)
    job_route = "/queues/{queueName}/jobs/{jobId}"
    total = "bullmq_proxy_http_requests_total"
    assert value(scraped, total, route=job_route, method="GET", status="2xx") == 1
    assert value(scraped, total, route=job_route, method="GET", status="4xx") == 2
    assert value(scraped, total, route="/queues/{queueName}/jobs", method="POST",
                 status="2xx") == 1
    assert not [key for key in scraped if ("route", "/queues/mail/jobs/1") in key[1]]
    count = "bullmq_proxy_http_request_duration_seconds_count"
    assert value(scraped, count, route=job_route, method="GET") == 3
    inf = "bullmq_proxy_http_request_duration_seconds_bucket"
    assert value(scraped, inf, route=job_route, method="GET", le="+Inf") == 3


@pytest_twisted.ensureDeferred
async def test_unmatched_paths_and_odd_methods_share_one_label(proxy):
    await proxy.request("GET", "/no/such/thing/1")
    await proxy.request("GET", "/no/such/thing/2")
    await proxy.request("BREW", "/")
    scraped = await scrape(proxy)
    total = "bullmq_proxy_http_requests_total"
    assert value(scraped, total, route="unmatched", method="GET", status="4xx") == 2
    assert value(scraped, total, route="unmatched", method="other", status="4xx") == 1


@pytest_twisted.ensureDeferred
async def test_unauthorized_requests_are_counted_too(proxy):
    await proxy.request("GET", "/queues/mail/jobs")
    scraped = await scrape(proxy)
    assert value(scraped, "bullmq_proxy_http_requests_total",
                 route="/queues/{queueName}/jobs", method="GET", status="4xx") == 1


@pytest_twisted.ensureDeferred
async def test_jobs_added_are_counted_per_queue(proxy):
    jobs = [{"name": f"j{i}", "data": i} for i in range(3)]
    await proxy.request("POST", "/queues/mail/jobs", json_body=jobs, headers=AUTH)
    await proxy.request("POST", "/queues/sms-out/jobs", json_body=jobs[:1], headers=AUTH)
    # Refused input adds nothing and counts nothing.
    await proxy.request("POST", "/queues/mail/jobs", json_body=[{"data": 1}], headers=AUTH)
    scraped = await scrape(proxy)
    assert value(scraped, "bullmq_proxy_jobs_added_total", queue="mail") == 3
    assert value(scraped, "bullmq_proxy_jobs_added_total", queue="sms-out") == 1


@pytest_twisted.ensureDeferred
async def test_metrics_token_is_required_when_set(redis_url):
    proxy = await start_proxy(make_config(redis_url, metrics_token="scrape-secret"))
    try:
        status, body, headers = await proxy.request("GET", "/metrics", headers=AUTH)
        assert status == 401
        assert body["type"] == "/problems/unauthorized"
        assert headers.getRawHeaders("www-authenticate")
        # The API token is not the metrics token.
        status, _, _ = await proxy.request("GET", "/metrics", headers=AUTH)
        assert status == 401
        scraped = await scrape(proxy, {"Authorization": "Bearer scrape-secret"})
        assert value(scraped, "bullmq_proxy_http_requests_total",
                     route="/metrics", method="GET", status="4xx") == 2
    finally:
        await proxy.stop()


def test_each_metrics_object_has_its_own_registry():
    first, second = Metrics(), Metrics()
    first.jobs_added.labels("mail").inc(5)
    assert first.registry.get_sample_value("bullmq_proxy_jobs_added_total",
                                           {"queue": "mail"}) == 5
    assert second.registry.get_sample_value("bullmq_proxy_jobs_added_total",
                                            {"queue": "mail"}) is None


def test_added_jobs_count_again_from_zero_once_their_queue_was_dropped():
    metrics = Metrics()
    served = {"mail", "sms"}
    metrics.keep_queues(lambda: served)

    def added(queue):
        return metrics.registry.get_sample_value("bullmq_proxy_jobs_added_total",
                                                 {"queue": queue})

    metrics.added("mail", 3)
    metrics.added("mail")
    metrics.added("sms")
    metrics.jobs_completed.labels("old").inc()  # a series the cache never held
    metrics.exposition()
    assert (added("mail"), added("sms")) == (4, 1)
    served.discard("mail")
    metrics.exposition()
    assert added("mail") is None
    metrics.added("mail", 2)
    assert (added("mail"), added("sms")) == (2, 1)


def test_circuit_breaker_state_is_an_enum():
    metrics = Metrics()
    metrics.circuit_breaker_state.labels("mail").state("open")
    get = metrics.registry.get_sample_value
    assert get("bullmq_proxy_circuit_breaker_state",
               {"queue": "mail", "bullmq_proxy_circuit_breaker_state": "open"}) == 1
    assert get("bullmq_proxy_circuit_breaker_state",
               {"queue": "mail", "bullmq_proxy_circuit_breaker_state": "closed"}) == 0
    with pytest.raises(ValueError, match="half-open"):
        metrics.circuit_breaker_state.labels("mail").state("half-open")


@pytest.mark.parametrize(("code", "label"), [(200, "2xx"), (204, "2xx"), (404, "4xx"),
                                             (503, "5xx"), (99, "other"), (600, "other")])
def test_status_class(code, label):
    assert status_class(code) == label


@pytest.mark.parametrize(("method", "label"), [(b"GET", "GET"), (b"post", "POST"),
                                               (b"BREW", "other"), (b"\xff", "other")])
def test_method_label(method, label):
    assert method_label(method) == label


@pytest_twisted.ensureDeferred
async def test_requests_recover_after_redis_restarts_and_the_counters_say_so(tmp_path):
    port = free_port()
    server = start_redis(port, tmp_path, persistent=True)
    proxy = await start_proxy(make_config(f"redis://127.0.0.1:{port}/0"))
    try:
        job = [{"name": "a", "data": 1}]
        assert (await proxy.request("POST", "/queues/mail/jobs", json_body=job,
                                    headers=AUTH))[0] == 200
        scraped = await scrape(proxy)
        assert value(scraped, "bullmq_proxy_redis_reconnects_total") == 0
        server.terminate()
        server.wait(10)
        assert (await proxy.request("GET", "/queues/mail/jobs/1", headers=AUTH))[0] == 503
        scraped = await scrape(proxy)
        failures = value(scraped, "bullmq_proxy_redis_command_errors_total", kind="connection")
        assert failures >= 1
        server = start_redis(port, tmp_path, persistent=True)
        status, body, _ = await proxy.request("GET", "/queues/mail/jobs/1", headers=AUTH)
        assert status == 200
        assert body["name"] == "a"  # the append-only file kept it
        scraped = await scrape(proxy)
        assert value(scraped, "bullmq_proxy_redis_reconnects_total") >= 1
    finally:
        await proxy.stop()
        server.terminate()
        server.wait(10)
