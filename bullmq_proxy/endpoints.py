"""Turning ``--listen`` descriptions into server endpoints, with start-up errors that say
what to fix instead of a traceback."""

from __future__ import annotations

from typing import Any

from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IStreamServerEndpoint

from bullmq_proxy.config import ConfigError


def listen_endpoint(reactor: Any, description: str) -> IStreamServerEndpoint:
    try:
        return serverFromString(reactor, description)
    except IndexError:
        if description.startswith("systemd:"):
            raise ConfigError(
                f"--listen {description}: systemd passed no such socket (LISTEN_FDS, "
                "LISTEN_PID); start the service through its .socket unit"
            ) from None
        raise ConfigError(f"--listen {description} is not a valid endpoint") from None
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"--listen {description} is not a valid endpoint: {err}") from None
