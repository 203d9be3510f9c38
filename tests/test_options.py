"""``twistd bullmq-proxy`` options: boolean settings are flags, empty env vars are unset,
``--version`` is the proxy's."""

from __future__ import annotations

import subprocess

import pytest
from twisted.python import usage

from bullmq_proxy import __version__
from bullmq_proxy.config import SETTINGS, load_config
from bullmq_proxy.redis.embedded import free_port
from bullmq_proxy.tap import Options
from tests.twistd_process import TWISTD, TwistdProxy, proxy_env


@pytest.fixture(autouse=True)
def plain_env(monkeypatch):
    for setting in SETTINGS:
        if setting.env:
            monkeypatch.delenv(setting.env, raising=False)
    monkeypatch.delenv("PORT", raising=False)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1")
    return monkeypatch


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


def test_every_boolean_setting_is_a_flag_that_takes_no_value():
    flags = [s for s in SETTINGS if s.default is False or s.default is True]
    assert {s.option for s in flags} >= {"debug", "redis-tls", "redis-cluster"}
    assert all(s.is_flag for s in flags)
    options = parse("--debug", "--listen", "tcp:8081", "--redis-tls", "--redis-cluster",
                    "--worker-metadata-key", "{w}:meta", "--worker-metadata-stream", "{w}:s")
    config = options.config
    assert config.debug is True
    assert config.listen == ("tcp:8081",)
    assert config.redis.tls is True
    assert config.redis.cluster is True


def test_a_flag_wins_over_the_env_either_way(plain_env):
    plain_env.setenv("REDIS_TLS", "true")
    plain_env.setenv("DEBUG", "false")
    assert parse().config.redis.tls is True
    assert parse("--no-redis-tls").config.redis.tls is False
    assert parse().config.debug is False
    assert parse("--debug").config.debug is True


def test_a_flag_and_its_opposite_are_refused():
    with pytest.raises(usage.UsageError, match="--debug and --no-debug contradict"):
        parse("--debug", "--no-debug")


def test_a_flag_with_a_value_is_refused():
    with pytest.raises(usage.UsageError):
        parse("--debug=true")


def test_copies_of_the_process_get_the_same_settings():
    first = parse("--debug", "--no-redis-cluster", "--queue-prefix", "app", "--plugin", "x")
    argv = first.passed_settings()
    assert argv == ["--no-redis-cluster", "--queue-prefix=app", "--debug", "--plugin=x"]
    assert parse(*argv).config == first.config


def test_an_empty_env_var_is_unset():
    config = load_config({"METRICS_TOKEN": "", "PORT": "", "REDIS_HOST": "", "AUTH_TOKENS": "",
                          "QUEUE_PREFIX": "", "DEBUG": "", "REDIS_PORT": ""})
    assert config.metrics_token is None
    assert config.listen == ("tcp:8080",)
    assert config.redis.embedded is True
    assert config.auth_tokens == ()
    assert config.queue_prefix == "bull"
    assert config.redis.port == 6379


def test_an_empty_option_is_still_refused():
    with pytest.raises(SystemExit, match="--metrics-token must not be empty"):
        parse("--metrics-token", "")


@pytest.mark.slow
def test_version_is_the_proxy_s(tmp_path):
    result = subprocess.run([*TWISTD, "bullmq-proxy", "--version"], env=proxy_env(),
                            cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"bullmq-proxy {__version__} (Twisted ")


@pytest.mark.slow
def test_twistd_with_debug_before_listen_serves_and_logs_requests(tmp_path, redis_url):
    port = free_port()
    log_path = tmp_path / "twistd.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*TWISTD, "--pidfile=", "-n", "bullmq-proxy", "--debug", "--listen", f"tcp:{port}"],
            env=proxy_env(REDIS_URL=redis_url, AUTH_TOKENS="t"), cwd=tmp_path, stdout=log,
            stderr=subprocess.STDOUT)
    proxy = TwistdProxy(process, port, log_path)
    try:
        proxy.wait_ready()
        assert proxy.request("GET", "/queues/mail/jobs", token="t")[0] == 200
    finally:
        proxy.stop()
    assert "GET /queues/mail/jobs 200" in proxy.output()
