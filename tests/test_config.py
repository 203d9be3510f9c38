"""Configuration: env vars and options, defaults, and one clear error per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from bullmq_proxy.config import SETTINGS, Config, ConfigError, RedisSettings, load_config


def test_defaults_match_the_original():
    config = load_config({})
    assert config.listen == ("tcp:8080",)
    assert config.queue_prefix == "bull"
    assert config.queue_cache_size == 100
    assert config.min_queue_name_length == 3
    assert config.max_queue_name_length == 100
    assert config.worker_metadata_key == "bmqp:w:meta"
    assert config.worker_metadata_stream == "bmpq:w:stream"
    assert config.max_len_worker_metadata_stream == 100
    assert config.auth_tokens == ()
    assert config.debug is False
    assert config.redis.embedded is True


def test_env_vars_are_read():
    config = load_config({
        "PORT": "9000", "REDIS_HOST": "redis.internal", "REDIS_PORT": "6380",
        "REDIS_USERNAME": "proxy", "REDIS_PASSWORD": "pw", "REDIS_TLS": "true",
        "AUTH_TOKENS": "a, b,,c", "QUEUE_PREFIX": "myapp", "QUEUE_CACHE_SIZE": "5",
        "DEBUG": "true", "MIN_QUEUE_NAME_LENGTH": "1", "MAX_QUEUE_NAME_LENGTH": "20",
        "WORKER_METADATA_KEY": "wk", "WORKER_METADATA_STREAM": "ws",
        "MAX_LEN_WORKER_METADATA_STREAM": "7",
    })
    assert config.listen == ("tcp:9000",)
    assert config.redis == RedisSettings(
        host="redis.internal", port=6380, username="proxy", password="pw", tls=True,
        embedded=False,
    )
    assert config.auth_tokens == ("a", "b", "c")
    assert config.queue_prefix == "myapp"
    assert config.queue_cache_size == 5
    assert config.debug is True
    assert (config.min_queue_name_length, config.max_queue_name_length) == (1, 20)
    assert config.worker_metadata_key == "wk"
    # The original read WORKER_METADATA_KEY here; this one reads its own variable.
    assert config.worker_metadata_stream == "ws"
    assert config.max_len_worker_metadata_stream == 7


def test_options_override_env():
    config = load_config(
        {"QUEUE_PREFIX": "from-env", "REDIS_URL": "redis://env:6379"},
        {"queue-prefix": "from-option", "redis-url": "rediss://opt:6390/2"},
        listen=("tcp:1234", "unix:/tmp/x.sock"),
    )
    assert config.queue_prefix == "from-option"
    assert config.redis.url == "rediss://opt:6390/2"
    assert config.redis.embedded is False
    assert config.listen == ("tcp:1234", "unix:/tmp/x.sock")


def test_redis_url_display_hides_credentials():
    config = load_config({"REDIS_URL": "redis://user:secret@host:6390/1"})
    assert config.redis.display() == "redis://host:6390"
    assert "secret" not in repr(config)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "abc"}, "PORT must be an integer, got 'abc'"),
        ({"PORT": "70000"}, "PORT must be at most 65535"),
        ({"QUEUE_CACHE_SIZE": "-1"}, "QUEUE_CACHE_SIZE must be at least 1"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL must be a redis://, rediss:// or unix:// URL"),
        ({"REDIS_URL": "redis://host:notaport"}, "REDIS_URL has an invalid port"),
        ({"REDIS_URL": "redis://"}, "REDIS_URL has no host name"),
        ({"REDIS_PORT": "0"}, "REDIS_PORT must be at least 1"),
        ({"REDIS_TLS": "maybe"}, "REDIS_TLS must be true or false"),
        ({"DEBUG": "yes please"}, "DEBUG must be true or false"),
        ({"QUEUE_PREFIX": " "}, "QUEUE_PREFIX must not be empty"),
        ({"REQUEST_TIMEOUT": "0"}, "REQUEST_TIMEOUT must be greater than 0"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT must be one of text, json"),
        ({"MIN_QUEUE_NAME_LENGTH": "50", "MAX_QUEUE_NAME_LENGTH": "10"},
         "MIN_QUEUE_NAME_LENGTH must not be greater than MAX_QUEUE_NAME_LENGTH"),
    ],
)
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(ConfigError) as caught:
        load_config(env)
    assert str(caught.value).startswith(message)


def test_bad_option_names_the_option():
    with pytest.raises(ConfigError, match=r"^--queue-cache-size must be an integer"):
        load_config({}, {"queue-cache-size": "many"})


def test_config_is_frozen():
    config = Config()
    with pytest.raises(AttributeError):
        config.queue_prefix = "x"  # type: ignore[misc]


def _accepted(setting):
    minimum, maximum = setting.parse.range
    if isinstance(setting.default, float):
        return f"> {minimum:g}, ≤ {maximum:g}"
    return f"{minimum} to {maximum}"


def test_every_numeric_setting_has_a_documented_range():
    text = (Path(__file__).parent.parent / "docs" / "operations.md").read_text()
    numeric = [s for s in SETTINGS if isinstance(s.default, int | float)
               and not isinstance(s.default, bool)]
    assert len(numeric) >= 20
    for setting in numeric:
        assert hasattr(setting.parse, "range"), setting.env
        assert f"| `{setting.env}` | {_accepted(setting)} |" in text, setting.env


@pytest.mark.parametrize("setting", [s for s in SETTINGS if hasattr(s.parse, "range")],
                         ids=lambda s: s.env)
def test_every_numeric_setting_refuses_values_past_its_range(setting):
    minimum, maximum = setting.parse.range
    below = minimum if isinstance(setting.default, float) else minimum - 1
    # The shortest queue name may not pass the longest.
    env = {"MAX_QUEUE_NAME_LENGTH": "1000"} if setting.env == "MIN_QUEUE_NAME_LENGTH" else {}
    for value in (below, maximum * 2 + 1, "1e400", "inf", "nan", "²", "9" * 5000):
        with pytest.raises(ConfigError) as caught:
            load_config({**env, setting.env: str(value)})
        assert str(caught.value).startswith(setting.env)
    assert load_config({**env, setting.env: str(maximum)}) is not None
