"""The transport-neutral core: queue and job operations that REST and WebSocket both call.

Everything here takes checked plain values, answers plain values and raises ``ProxyError``;
``http/`` and ``ws/`` turn those into responses and replies.
"""

from __future__ import annotations

import attrs

from bullmq_proxy.config import Config
from bullmq_proxy.core.events import EventsHub
from bullmq_proxy.core.flows import Flows
from bullmq_proxy.core.job_admin import JobAdmin
from bullmq_proxy.core.pull import Pulls
from bullmq_proxy.core.queue_admin import QueueAdmin
from bullmq_proxy.core.registrations import RegisteredWorkers
from bullmq_proxy.core.schedulers import Schedulers
from bullmq_proxy.queues import QueueRegistry


@attrs.frozen
class Core:
    queues: QueueRegistry
    queue_admin: QueueAdmin
    job_admin: JobAdmin
    schedulers: Schedulers
    flows: Flows
    events: EventsHub
    pulls: Pulls

    async def close(self) -> None:
        """Stop what runs in the background: the pulled queues' stalled checks, the feeds."""
        await self.pulls.close()
        await self.events.close()


def build_core(queues: QueueRegistry, config: Config) -> Core:
    workers = RegisteredWorkers(queues.client, config.worker_metadata_key)
    events = EventsHub(queues.client, queues, config.redis)
    return Core(queues=queues, queue_admin=QueueAdmin(queues, workers.urls),
                job_admin=JobAdmin(queues), schedulers=Schedulers(queues), flows=Flows(queues),
                events=events, pulls=Pulls(queues, events, config.worker_stalled_interval))
