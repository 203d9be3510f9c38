"""What a worker writes to a job while it runs, for REST and WebSocket alike: progress and
log lines. Both refuse a job that does not exist (404 not-found), and write nothing for it.
"""

from __future__ import annotations

from typing import Any

from bullmq_proxy.errors import NOT_FOUND, ProxyError
from bullmq_proxy.queues import QueueRegistry

# bullmq's addLog pushes to the logs list without checking the job, leaving a logs key that
# nothing ever removes. This adds only to a job that exists and, when the caller gives no
# limit, keeps the job's own keepLogs (stored as "kl" in its opts), as Node BullMQ's job.log
# does.
# KEYS: job hash, its logs list. ARGV: row, keepLogs (0: the job's own). -1: no such job.
ADD_LOG = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local keep = tonumber(ARGV[2]) or 0
if keep <= 0 then
  local ok, opts = pcall(cjson.decode, redis.call('HGET', KEYS[1], 'opts') or '{}')
  if ok and type(opts) == 'table' then keep = tonumber(opts['kl']) or 0 end
end
local count = redis.call('RPUSH', KEYS[2], ARGV[1])
if keep > 0 then
  redis.call('LTRIM', KEYS[2], -keep, -1)
  return math.min(keep, count)
end
return count
"""


def no_such_job(job_id: str) -> ProxyError:
    return ProxyError(NOT_FOUND, f"Job {job_id!r} does not exist in this queue.", "jobId")


class JobUpdates:
    def __init__(self, queues: QueueRegistry) -> None:
        self._queues = queues
        self._add_log = queues.client.register_script(ADD_LOG)

    async def add_log(self, queue: str, job_id: str, row: str, keep_logs: int = 0) -> int:
        """Append a log line; returns how many the job keeps."""
        count = await self._add_log(
            keys=[self._queues.key(queue, job_id), self._queues.key(queue, job_id, "logs")],
            args=[row, keep_logs])
        if count < 0:
            raise no_such_job(job_id)
        return count

    async def update_progress(self, queue: str, job_id: str, progress: Any) -> None:
        try:
            await self._queues.get(queue).backend.updateProgress(job_id, progress)
        except TypeError:
            # bullmq's script answers a missing job with an error code that bullmq raises as
            # a TypeError; any other TypeError is a bug and stays one.
            if await self._queues.client.exists(self._queues.key(queue, job_id)):
                raise
            raise no_such_job(job_id) from None
