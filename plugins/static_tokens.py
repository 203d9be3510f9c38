"""The default authenticator: bearer tokens listed in AUTH_TOKENS."""

from __future__ import annotations

from zope.interface import implementer

from bullmq_proxy.auth import IAuthenticator, tokens_match
from bullmq_proxy.config import Config


@implementer(IAuthenticator)
class StaticTokens:
    name = "static-tokens"

    def __init__(self, config: Config) -> None:
        self._tokens = config.auth_tokens

    def authenticate(self, token: str) -> bool:
        # Compare against every token so the time taken does not reveal which one matched.
        matched = False
        for expected in self._tokens:
            matched |= tokens_match(token, expected)
        return matched
