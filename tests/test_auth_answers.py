"""Gate with authenticators that answer at once, later (a Deferred) or by raising."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.web.test.requesthelper import DummyRequest

from bullmq_proxy.auth import Gate, Policy
from bullmq_proxy.errors import ProxyError
from tests.support import aio


class Answers:
    name = "answers"

    def __init__(self, answer):
        self._answer = answer

    def authenticate(self, token: str):
        return self._answer(token)


def later(value):
    def answer(token):
        d = defer.Deferred()
        reactor.callLater(0.01, d.callback, value)
        return d
    return answer


def refusing_with(error):
    def answer(token):
        raise error
    return answer


def request_with(token: str) -> DummyRequest:
    request = DummyRequest([b"queues"])
    request.path = b"/queues"
    request.requestHeaders.setRawHeaders(b"authorization", [f"Bearer {token}".encode()])
    return request


async def authorize(*authenticators):
    gate = Gate([Answers(a) for a in authenticators], client=None, queues=None)
    await gate.authorize(request_with("tok"), Policy.TOKEN, {})


@pytest_twisted.ensureDeferred
async def test_an_immediate_yes_passes():
    await aio(authorize(lambda token: token == "tok"))


@pytest_twisted.ensureDeferred
async def test_a_deferred_yes_after_an_immediate_no_passes():
    await aio(authorize(lambda token: False, later(True)))


@pytest_twisted.ensureDeferred
async def test_deferred_and_immediate_noes_are_refused():
    with pytest.raises(ProxyError) as refused:
        await aio(authorize(lambda token: False, later(False)))
    assert refused.value.kind.status == 401


@pytest_twisted.ensureDeferred
async def test_an_authenticator_that_raises_fails_the_request():
    with pytest.raises(RuntimeError, match="backend down"):
        await aio(authorize(refusing_with(RuntimeError("backend down"))))
