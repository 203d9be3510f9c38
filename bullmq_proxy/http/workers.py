"""REST handlers of the worker registry: register, list, inspect and remove HTTP workers."""

from __future__ import annotations

import contextlib
from typing import Any

from bullmq_proxy.auth import Policy, bearer_token
from bullmq_proxy.bounds import ASYNC_TIMEOUT
from bullmq_proxy.config import Config
from bullmq_proxy.core.pull import Pulls
from bullmq_proxy.errors import CONFLICT, NOT_FOUND, ProxyError, invalid
from bullmq_proxy.http.router import Call, Reply, Route
from bullmq_proxy.redaction import redact_registration, redact_url
from bullmq_proxy.rights import Right
from bullmq_proxy.schemas import responses as answers
from bullmq_proxy.validation import parse_json, refuse_unknown, require_in, require_object
from bullmq_proxy.workers.metadata import check_slots, load_metadata, parse_metadata
from bullmq_proxy.workers.service import WorkersService


class WorkerRoutes:
    def __init__(self, config: Config, workers: WorkersService) -> None:
        self._config = config
        self._workers = workers
        self._store = workers.store

    async def register(self, call: Call) -> Any:
        metadata = parse_metadata(call.json(), self._config)
        if call.principal is not None:
            call.principal.require(Right.WORKERS, metadata.queue)
        # Every instance runs every registration: refuse one that could not run here. (Two
        # registrations racing past this check are refused by the follower, and reported.)
        check_slots(metadata, await self._registered_slots(besides=metadata.queue),
                    self._config.worker_max_slots)
        await self._store.save(metadata)
        return Reply(text="OK")

    async def _registered_slots(self, besides: str) -> int:
        slots = 0
        for queue, raw in (await self._store.all()).items():
            if queue != besides:
                with contextlib.suppress(ProxyError, ValueError):
                    slots += load_metadata(raw, self._config).concurrency
        return slots

    async def list(self, call: Call) -> Any:
        listed: dict[str, Any] = {}
        for queue, raw in (await self._store.all()).items():
            if call.principal is not None and not call.principal.covers(queue):
                continue
            try:
                listed[queue] = redact_url(_stored(raw)["endpoint"]["url"])
            except (KeyError, TypeError):
                listed[queue] = None
        return listed

    async def get(self, call: Call) -> Any:
        queue = call.params["queueName"]
        raw = await self._store.get(queue)
        if raw is None:
            raise ProxyError(NOT_FOUND, f"No worker is registered for queue {queue!r}.",
                             "queueName")
        running = self._workers.workers.get(queue)
        state: dict[str, Any] = {"running": running is not None}
        if queue in self._workers.refused:
            state["refused"] = self._workers.refused[queue]
        if running is not None:
            live = running.dispatcher.state
            breaker = running.dispatcher.breaker
            state.update(inFlight=live.in_flight, completed=live.completed, failed=live.failed,
                         settled=live.settled,
                         lastError=live.last_error, lastErrorAt=live.last_error_at,
                         workerErrors=live.worker_errors,
                         lastWorkerError=live.last_worker_error,
                         lastWorkerErrorAt=live.last_worker_error_at,
                         circuit={"state": breaker.state, "failures": breaker.failures,
                                  "retryIn": breaker.retry_in()})
        return {**redact_registration(_stored(raw)), "state": state}

    async def remove(self, call: Call) -> Any:
        queue = call.params["queueName"]
        if not await self._store.remove(queue):
            raise ProxyError(NOT_FOUND, f"No worker is registered for queue {queue!r}.",
                             "queueName")
        return Reply(text="OK")


def _stored(raw: str) -> dict[str, Any]:
    """A stored registration as an object, whatever was written there around the API."""
    try:
        stored = parse_json(raw.encode("utf-8", "surrogatepass"))
    except ProxyError as err:
        return {"unreadable": err.detail}
    return stored if isinstance(stored, dict) else {"unreadable": "not a JSON object"}


def worker_routes(config: Config, workers: WorkersService) -> list[Route]:
    w = WorkerRoutes(config, workers)
    return [
        Route(b"POST", "/workers", w.register, response=answers.TEXT_OK, media="text/plain",
              right=Right.WORKERS,
              summary="Register (or replace) a queue's HTTP-endpoint worker"),
        Route(b"GET", "/workers", w.list, response=answers.WORKER_URLS, right=Right.WORKERS,
              summary="The registered workers' endpoint URLs"),
        Route(b"GET", "/workers/{queueName}", w.get, response=answers.WORKER,
              right=Right.WORKERS,
              summary="A registration and how its worker runs here"),
        Route(b"DELETE", "/workers/{queueName}", w.remove, response=answers.TEXT_OK,
              right=Right.WORKERS,
              media="text/plain", summary="Remove a queue's worker"),
    ]


class SettlementRoutes:
    """The job API of pulled jobs and of endpoints that answered 202, authorized by the
    job's lock token."""

    def __init__(self, workers: WorkersService, pulls: Pulls) -> None:
        self._workers = workers
        self._settlements = workers.settlements
        self._pulls = pulls

    def _worker_opts(self, queue: str) -> dict[str, Any]:
        running = self._workers.workers.get(queue)
        return running.metadata.opts if running is not None else {}

    async def complete(self, call: Call) -> Any:
        body = require_object(call.json(), "body")
        refuse_unknown(body, frozenset({"returnvalue"}), "")
        queue, job_id = call.params["queueName"], call.params["jobId"]
        await self._settlements.complete(queue, job_id, _lock_token(call),
                                         body.get("returnvalue"), self._worker_opts(queue))
        return Reply(text="OK")

    async def fail(self, call: Call) -> Any:
        body = require_object(call.json(), "body")
        refuse_unknown(body, frozenset({"reason", "retry"}), "")
        reason = body.get("reason")
        if not isinstance(reason, str) or not reason:
            raise invalid("reason", "reason is required and must be a non-empty string")
        retry = body.get("retry", True)
        if not isinstance(retry, bool):
            raise invalid("retry", "retry must be true or false")
        queue, job_id = call.params["queueName"], call.params["jobId"]
        await self._settlements.fail(queue, job_id, _lock_token(call), reason, retry,
                                     self._worker_opts(queue))
        return Reply(text="OK")

    async def lock(self, call: Call) -> Any:
        body = require_object(call.json(), "body")
        refuse_unknown(body, frozenset({"duration"}), "")
        if "duration" not in body:
            raise invalid("duration", "duration (ms) is required")
        duration = require_in(body["duration"], "duration", ASYNC_TIMEOUT)
        queue, job_id = call.params["queueName"], call.params["jobId"]
        if await self._settlements.has_deadline(queue, job_id):
            # An endpoint's 202 job: the worker holding it renews the lock to this deadline.
            await self._settlements.set_deadline(queue, job_id, duration)
        elif not await self._pulls.extend(queue, job_id, _lock_token(call), duration):
            raise ProxyError(CONFLICT, "The job's lock is not held by this token any more.",
                             "jobId")
        return Reply(text="OK")


def _lock_token(call: Call) -> str:
    token = bearer_token(call.request)
    assert token is not None, "the JOB_LOCK policy has checked it"
    return token


def settlement_routes(workers: WorkersService, pulls: Pulls) -> list[Route]:
    s = SettlementRoutes(workers, pulls)
    job = "/queues/{queueName}/jobs/{jobId}"
    return [
        Route(b"POST", job + "/complete", s.complete, Policy.JOB_LOCK,
              response=answers.TEXT_OK, media="text/plain",
              summary="Complete a pulled job, or one an endpoint answered 202 for"),
        Route(b"POST", job + "/fail", s.fail, Policy.JOB_LOCK, response=answers.TEXT_OK,
              media="text/plain",
              summary="Fail a pulled job, or one an endpoint answered 202 for"),
        Route(b"POST", job + "/lock", s.lock, Policy.JOB_LOCK, response=answers.TEXT_OK,
              media="text/plain",
              summary="Extend a pulled job's lock, or the deadline of a job answered 202"),
    ]
