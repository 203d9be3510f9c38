"""The assembled MultiService: named services in an order that makes shutdown graceful."""

from __future__ import annotations

from twisted.internet import reactor

from bullmq_proxy.service import build_service
from tests.support import make_config


def test_services_stop_components_before_listeners_and_redis(redis_url):
    top = build_service(make_config(redis_url, listen=("tcp:0",)), reactor)
    names = [service.name for service in top]
    assert names == ["redis", "http", "workers", "websockets"]
    # MultiService stops in reverse: components, then listeners, then Redis.
    http = top.getServiceNamed("http")
    assert [listener.name for listener in http] == ["listen tcp:0"]
