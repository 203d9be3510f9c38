"""The registry follower's failure paths, against a real Redis."""

from __future__ import annotations

import asyncio

import pytest_twisted
import redis.asyncio as aredis

from bullmq_proxy.workers.follower import RegistryFollower
from bullmq_proxy.workers.metadata import parse_metadata
from bullmq_proxy.workers.store import WorkerStore
from tests.support import aio, make_config
from tests.workers_helpers import eventually


def registration(queue):
    body = {"queue": queue, "endpoint": {"url": "http://127.0.0.1:9/", "method": "POST"}}
    return parse_metadata(body, make_config())


class Recorder:
    def __init__(self, fail_first_apply=False):
        self.applied = []
        self.reconciled = []
        self._fail = fail_first_apply

    async def apply(self, queue, raw):
        if self._fail:
            self._fail = False
            raise RuntimeError("a bug while applying")
        self.applied.append((queue, raw is not None))

    async def reconcile(self, registrations):
        self.reconciled.append(sorted(registrations))


async def _follow(redis_url, recorder):
    # No retries: a dropped connection must reach the follower as an error.
    client = aredis.Redis.from_url(redis_url, decode_responses=True, retry_on_error=[])
    blocking = aredis.Redis.from_url(redis_url, decode_responses=True, retry_on_error=[])
    store = WorkerStore(client, "bmqp:w:meta", "bmpq:w:stream", 100)
    follower = RegistryFollower(store, blocking, recorder.apply, recorder.reconcile)
    task = asyncio.ensure_future(follower.follow())
    return store, follower, task, (client, blocking)


async def _warm_up(store, follower, recorder):
    """Start following; from an empty stream the first announcement costs one full reload."""
    await eventually(lambda: follower.loaded, what="initial load")
    assert recorder.reconciled == [[]]
    await aio(store.save(registration("first")))
    await eventually(lambda: ["first"] in recorder.reconciled, what="first announcement")


async def _stop(follower, task, clients):
    follower.stopping = True
    await asyncio.wait_for(task, 5)
    for client in clients:
        await client.aclose()


@pytest_twisted.ensureDeferred
async def test_lost_connection_leads_to_a_full_resync(redis_url, sync_redis):
    recorder = Recorder()
    store, follower, task, clients = await aio(_follow(redis_url, recorder))
    try:
        await _warm_up(store, follower, recorder)
        await aio(store.save(registration("second")))
        await eventually(lambda: ("second", True) in recorder.applied, what="announcement")
        # A change the follower cannot hear about, then its connections drop.
        sync_redis.hset("bmqp:w:meta", "silent", registration("silent").raw)
        sync_redis.client_kill_filter(_type="normal", skipme=True)
        await eventually(lambda: ["first", "second", "silent"] in recorder.reconciled,
                         what="resync")
        await aio(store.save(registration("after")))
        # Either announced, or caught by one more reload if a stale connection failed again.
        await eventually(lambda: ("after", True) in recorder.applied
                         or "after" in recorder.reconciled[-1], what="following again")
    finally:
        await aio(_stop(follower, task, clients))


@pytest_twisted.ensureDeferred
async def test_an_unexpected_error_while_applying_leads_to_a_full_resync(redis_url):
    recorder = Recorder(fail_first_apply=True)
    store, follower, task, clients = await aio(_follow(redis_url, recorder))
    try:
        await _warm_up(store, follower, recorder)
        await aio(store.save(registration("boom")))
        await eventually(lambda: ["boom", "first"] in recorder.reconciled,
                         what="resync after the bug")
        assert not task.done()
        await aio(store.remove("boom"))
        await eventually(lambda: ("boom", False) in recorder.applied, what="following again")
    finally:
        await aio(_stop(follower, task, clients))
