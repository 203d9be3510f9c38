"""Logs: JSON lines that log shippers read, info level unless --debug, and nothing per job or
per probe at info level under a steady load."""

from __future__ import annotations

import io
import json
from datetime import datetime

import pytest
import pytest_twisted
from twisted.logger import Logger, LogLevel, LogPublisher, globalLogPublisher
from twisted.python import log as legacy_log

from bullmq_proxy.logs import filtered, json_file_observer, json_line
from bullmq_proxy.redis.embedded import free_port
from tests.support import TOKEN, make_config, start_proxy
from tests.twistd_process import proxy_env, start_twistd
from tests.workers_helpers import eventually, listen_endpoint, ok


def _events(emit) -> list[dict]:
    events: list[dict] = []
    emit(Logger(namespace="bullmq_proxy.example", observer=events.append))
    return events


def test_a_json_line_has_time_level_logger_message_and_the_fields():
    [event] = _events(lambda log: log.warn("Worker of {queue} hit {count} errors",
                                           queue="mail", count=3))
    record = json.loads(json_line(event))
    assert list(record)[:4] == ["time", "level", "logger", "message"]
    assert record["level"] == "warning"
    assert record["logger"] == "bullmq_proxy.example"
    assert record["message"] == "Worker of mail hit 3 errors"
    assert (record["queue"], record["count"]) == ("mail", 3)
    assert datetime.fromisoformat(record["time"]).utcoffset().total_seconds() == 0
    assert record["time"].endswith("Z")
    assert not [key for key in record if key.startswith("log_")]


def test_a_failure_is_one_traceback_field():
    def fail(log):
        try:
            raise ValueError("bad value")
        except ValueError:
            log.failure("Unexpected error {incident}", incident="abc")

    [event] = _events(fail)
    line = json_line(event)
    assert line.count("\n") == 1  # the traceback's newlines are escaped in the one line
    record = json.loads(line)
    assert record["level"] == "critical"
    assert record["message"] == "Unexpected error abc"
    assert record["error"] == "ValueError: bad value"
    assert record["traceback"].startswith("Traceback")
    assert "raise ValueError" in record["traceback"]


def test_objects_and_legacy_events_become_text():
    out = io.StringIO()
    publisher = LogPublisher(json_file_observer(out))
    Logger(namespace="x", observer=publisher).info("{thing}", thing=object())
    legacy = legacy_log.LogPublisher()
    legacy.addObserver(lambda event: publisher({**event, "log_namespace": "legacy",
                                                "log_level": LogLevel.info,
                                                "log_format": "{log_text}",
                                                "log_text": " ".join(event["message"]),
                                                "log_time": event["time"]}))
    legacy.msg("TCP Port 8080 Closed")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["message"].startswith("<object object at")
    assert first["thing"].startswith("<object object at")
    assert second["message"] == "TCP Port 8080 Closed"
    assert "isError" not in second


def test_debug_events_and_factory_chatter_show_only_with_debug():
    def emit(log):
        log.debug("a request")
        log.info("Starting factory {factory!r}", factory=object())
        log.info("Stopping factory {factory!r}", factory=object())
        log.info("worth saying")

    for debug, expected in ((False, ["worth saying"]),
                            (True, ["a request", "Starting factory", "Stopping factory",
                                    "worth saying"])):
        seen: list[str] = []
        observer = filtered(lambda event, seen=seen: seen.append(event["log_format"]), debug)
        for event in _events(emit):
            observer(event)
        assert [text.split(" {")[0] for text in seen] == expected


@pytest_twisted.ensureDeferred
async def test_a_failing_probe_logs_below_info():
    proxy = await start_proxy(make_config(f"redis://127.0.0.1:{free_port()}/0"))
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        for _ in range(3):
            status, _, _ = await proxy.request("GET", "/readyz")
            assert status == 503
    finally:
        globalLogPublisher.removeObserver(events.append)
        await proxy.stop()
    probes = [event for event in events if event.get("log_namespace") == "bullmq_proxy.health"]
    assert probes
    assert {event["log_level"] for event in probes} == {LogLevel.debug}


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_json_logs_of_a_real_twistd(tmp_path, redis_url):
    env = proxy_env(REDIS_URL=redis_url, AUTH_TOKENS="t", LOG_FORMAT="json")
    proxy = start_twistd([], env, tmp_path, free_port())
    try:
        proxy.wait_ready()
        proxy.request("GET", "/queues/mail/jobs", token="wrong")
    finally:
        proxy.stop()
    records = [json.loads(line) for line in proxy.output().splitlines() if line.strip()]
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record), record
        assert record["message"], record
        assert isinstance(record["level"], str)
    refused = next(r for r in records if r["logger"] == "bullmq_proxy.auth")
    assert refused["level"] == "warning"
    assert "wrong" not in json.dumps(refused)
    assert any(r["message"] == "Server Shut Down." for r in records)


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_a_steady_load_logs_nothing_per_job_at_info_level(tmp_path, redis_url):
    async def closing(delivery):
        # A new connection for every call: the case that logged a factory start and stop.
        status, headers, body = ok("done")
        return status, {**headers, "Connection": "close"}, body

    endpoint = listen_endpoint(closing)
    proxy = start_twistd([], proxy_env(REDIS_URL=redis_url, AUTH_TOKENS=TOKEN), tmp_path,
                         free_port())
    try:
        proxy.wait_ready()
        registration = {"queue": "steady", "endpoint": {"url": endpoint.url, "method": "POST"}}
        assert proxy.request("POST", "/workers", registration, TOKEN) == (200, "OK")
        await _run_jobs(proxy, endpoint, 1)
        before = proxy.output().splitlines()
        await _run_jobs(proxy, endpoint, 30)
        for _ in range(5):
            proxy.request("GET", "/readyz")
            proxy.request("GET", "/metrics", token=TOKEN)
        after = proxy.output().splitlines()
    finally:
        proxy.stop()
        await endpoint.close()
    # The first registration on a fresh Redis is no cause for a warning either.
    assert not [line for line in before if "#warn" in line or "#error" in line], before
    assert after[len(before):] == []


async def _run_jobs(proxy, endpoint, count):
    status, _ = proxy.request("POST", "/queues/steady/jobs",
                              [{"name": "j", "data": n} for n in range(count)], TOKEN)
    assert status == 200

    def completed():
        _, body = proxy.request("GET", "/queues/steady/jobs?statuses=completed&length=1",
                                token=TOKEN)
        return body["counts"]["completed"]

    done = completed() + count
    await eventually(lambda: completed() >= done, what=f"{count} jobs to complete")
