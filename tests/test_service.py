"""The assembled proxy: named services whose stop order makes shutdown graceful."""

from __future__ import annotations

from twisted.internet import reactor

from bullmq_proxy.service import SequentialMultiService, build_service
from tests.support import make_config


def test_services_stop_drain_first_then_components_listeners_and_redis(redis_url):
    top = build_service(make_config(redis_url, listen=("tcp:0",)), reactor)
    assert isinstance(top, SequentialMultiService)
    # Stopped in reverse, one after another (tests/test_shutdown.py).
    # "reload" (the SIGHUP handler) goes first, at once, so no reload runs during a stop.
    assert [service.name for service in top] == [
        "redis", "core", "http", "workers", "websockets", "drain", "reload"]
    http = top.getServiceNamed("http")
    assert [listener.name for listener in http] == ["listen tcp:0"]
