"""bullmq's lock manager, renewing only while its worker holds jobs.

bullmq's ``LockManager`` runs its renewal loop from the worker's start to its close, waking
every ``lockRenewTime / 2`` whether or not it holds a job: 1,000 workers that each took one
job once make 133 wake-ups a second, about 3 % of a core here, for nothing. This one starts
bullmq's loop with the first job tracked and ends it when the last is untracked (never in the
middle of a renewal: then at its end). What the loop does, when a lock is renewed and what a
failed renewal emits, are bullmq's own.
"""

from __future__ import annotations

from typing import Any

from bullmq.abort_controller import AbortController
from bullmq.lock_manager import LockManager


class IdleLockManager(LockManager):
    _renewing = False

    def track_job(self, job_id: str, token: str, ts: int,
                  should_create_controller: bool = False) -> AbortController | None:
        controller = super().track_job(job_id, token, ts, should_create_controller)
        self.start()  # nothing when it already runs
        return controller

    def untrack_job(self, job_id: str) -> None:
        super().untrack_job(job_id)
        if not self.tracked_jobs and not self._renewing:
            self._stop_renewing()

    async def _extend_locks(self, job_ids: list[Any]) -> None:
        self._renewing = True
        try:
            await super()._extend_locks(job_ids)
        finally:
            self._renewing = False
            if not self.tracked_jobs:
                self._stop_renewing()  # this task: it ends at its next sleep

    def _stop_renewing(self) -> None:
        task, self._renewal_task = self._renewal_task, None
        if task is not None:
            task.cancel()
