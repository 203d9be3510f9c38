"""``QueueClient``: queue operations over one socket (``/ws/queues/:queueName``)."""

from __future__ import annotations

from typing import Any

from bullmq_proxy.client.connection import Connection, socket_url, unwrap


class QueueClient:
    """Every method sends one command and returns its result; err replies raise
    ``ProxyClientError`` (with ``code`` and ``field``)."""

    def __init__(self, url: str, queue: str, token: str, *, request_timeout: float = 15.0
                 ) -> None:
        self._connection = Connection(socket_url(url, queue), token, lambda _: None,
                                      request_timeout=request_timeout)

    async def _call(self, fn: str, *args: Any) -> Any:
        return unwrap(await self._connection.request({"fn": fn, "args": list(args)}))

    async def add(self, name: str, data: Any, opts: dict[str, Any] | None = None) -> Any:
        return await self._call("add", name, data, opts)

    async def add_bulk(self, jobs: list[dict[str, Any]]) -> Any:
        return await self._call("addBulk", jobs)

    async def pause(self) -> None:
        await self._call("pause")

    async def resume(self) -> None:
        await self._call("resume")

    async def get_job(self, job_id: str) -> Any:
        return await self._call("getJob", job_id)

    async def get_jobs(self, states: str | list[str], start: int = 0, end: int | None = None,
                       asc: bool = False) -> Any:
        return await self._call("getJobs", states, start, end, asc)

    async def get_job_counts(self, *states: str) -> Any:
        return await self._call("getJobCounts", *states)

    async def get_job_logs(self, job_id: str, start: int = 0, end: int = -1,
                           asc: bool = True) -> Any:
        return await self._call("getJobLogs", job_id, start, end, asc)

    async def get_workers(self) -> Any:
        return await self._call("getWorkers")

    async def update_job_progress(self, job_id: str, progress: float | dict[str, Any]) -> None:
        await self._call("updateJobProgress", job_id, progress)

    async def add_job_log(self, job_id: str, row: str, keep_logs: int | None = None) -> Any:
        return await self._call("addJobLog", job_id, row, keep_logs)

    async def remove_repeatable(self, name: str, repeat: dict[str, Any] | None = None) -> Any:
        return await self._call("removeRepeatable", name, repeat)

    async def close(self) -> None:
        await self._connection.close()
