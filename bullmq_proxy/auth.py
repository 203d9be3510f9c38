"""Authentication, decided in one place for REST routes and WebSocket upgrades alike.

Authenticators are plugins (``IAuthenticator``); the static-token check is the default
one. Job-scoped calls from worker endpoints are authorized by the job's lock token instead.
"""

from __future__ import annotations

import enum
import hmac
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis.asyncio as aredis
from twisted.internet.defer import Deferred
from twisted.web.iweb import IRequest
from zope.interface import Attribute, Interface

from bullmq_proxy.bridge import as_future
from bullmq_proxy.errors import UNAUTHORIZED, ProxyError
from bullmq_proxy.logs import Logger
from bullmq_proxy.queues import QueueRegistry
from bullmq_proxy.rights import FULL_ACCESS, Principal, RateLimiter, Right

TOKEN_FILE = "auth-token"
log = Logger(namespace="bullmq_proxy.auth")


class IAuthenticator(Interface):
    """Decides whether a bearer token may use the proxy's API, and as whom."""

    name = Attribute("A short name for logs")

    def authenticate(token: str) -> bool | Principal | Deferred[bool | Principal]:  # type: ignore[misc]
        """A ``Principal`` (its rights and queues), True for full access, False to refuse.
        Must compare in constant time."""


class Policy(enum.Enum):
    PUBLIC = "public"
    TOKEN = "token"
    JOB_LOCK = "job-lock"


def tokens_match(given: str, expected: str) -> bool:
    """Constant-time comparison of two tokens."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def header_text(request: IRequest, name: bytes) -> str | None:
    """A request header as text. Read as bytes: Twisted's text lookup raises on bytes that
    are not UTF-8, which anyone can send; those become U+FFFD and then match nothing."""
    value = request.getHeader(name)
    return None if value is None else value.decode("utf-8", "replace")


def bearer_token(request: IRequest, *, allow_query: bool = False) -> str | None:
    header = header_text(request, b"authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    if allow_query:
        values = request.args.get(b"token")
        if values and values[0]:
            return values[0].decode("utf-8", "replace")
    return None


def load_or_create_token(data_dir: str) -> tuple[str, bool]:
    """The token kept in the data directory, made on first start; True when just made."""
    path = os.path.join(data_dir, TOKEN_FILE)
    try:
        with open(path, encoding="utf-8") as file:
            token = file.read().strip()
        if token:
            return token, False
    except FileNotFoundError:
        pass
    os.makedirs(data_dir, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(token + "\n")
    return token, True


class Gate:
    """Checks a request against a route's policy; raises 401 ``ProxyError`` when refused."""

    def __init__(
        self,
        authenticators: Sequence[IAuthenticator],
        client: aredis.Redis,
        queues: QueueRegistry,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._authenticators = tuple(authenticators)
        self._client = client
        self._queues = queues
        self._limiter = limiter
        self.reloaded: list[Callable[[], None]] = []

    async def authorize(
        self,
        request: IRequest,
        policy: Policy,
        params: Mapping[str, str],
        *,
        right: Right | None = None,
        allow_query: bool = False,
    ) -> Principal | None:
        """Who the request's token is (None for a public or job-lock call); raises 401 for
        no or a wrong token, 403 when it lacks ``right`` on the path's queue, 429 when it is
        over its rate."""
        if policy is Policy.PUBLIC:
            return None
        token = bearer_token(request, allow_query=allow_query)
        if token is None:
            self._refuse(request, "missing token")
        if policy is Policy.JOB_LOCK:
            if not await self._holds_lock(token, params["queueName"], params["jobId"]):
                self._refuse(request, "invalid token")
            return None
        principal = await self.principal(token)
        if principal is None:
            self._refuse(request, "invalid token")
        if self._limiter is not None:
            self._limiter.take(principal)
        if right is not None:
            principal.require(right, params.get("queueName"))
        return principal

    async def accepts(self, call: Any) -> bool:
        """Whether the request carries a token an authenticator accepts (for answers that
        say more to token holders)."""
        token = bearer_token(call.request)
        return token is not None and await self.principal(token) is not None

    def reload(self) -> None:
        """Let every authenticator that can reread its tokens do so (SIGHUP), then tell
        whoever holds accepted tokens (open WebSocket sockets) to check them again."""
        for authenticator in self._authenticators:
            reload = getattr(authenticator, "reload", None)
            if reload is not None:
                reload()
        for listener in list(self.reloaded):
            listener()

    async def principal(self, token: str) -> Principal | None:
        """Whom the first authenticator that accepts ``token`` says it is."""
        for authenticator in self._authenticators:
            # Most authenticators answer at once; only a Deferred answer needs the bridge.
            accepted = authenticator.authenticate(token)
            if isinstance(accepted, Deferred):
                accepted = await as_future(accepted)
            if isinstance(accepted, Principal):
                return accepted
            if accepted:
                return FULL_ACCESS
        return None

    async def _holds_lock(self, token: str, queue_name: str, job_id: str) -> bool:
        lock = await self._client.get(self._queues.key(queue_name, job_id, "lock"))
        return lock is not None and tokens_match(token, lock)

    def _refuse(self, request: IRequest, why: str) -> Any:
        peer = request.getClientAddress()
        log.warn(
            "Unauthorized request ({why}) to {path} from {peer}",
            why=why,
            path=request.path.decode("utf-8", "replace"),
            peer=getattr(peer, "host", str(peer)),
        )
        raise ProxyError(
            UNAUTHORIZED,
            "A valid bearer token is required (Authorization: Bearer <token>).",
            headers={"WWW-Authenticate": 'Bearer realm="bullmq-proxy"'},
        )
