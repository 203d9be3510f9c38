"""Finding the proxy's extension plugins through the ``bullmq_proxy.plugins`` entry points.

An entry point names a factory that takes the ``Config`` and returns an object providing
one or more of the core interfaces (``IAuthenticator`` so far).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from typing import Any

from bullmq_proxy.config import Config, ConfigError

GROUP = "bullmq_proxy.plugins"
DEFAULT_PLUGINS = ("static-tokens", "token-file")


def available() -> dict[str, Callable[[Config], Any]]:
    return {point.name: point for point in entry_points(group=GROUP)}  # type: ignore[misc]


def load_plugins(config: Config, names: Iterable[str]) -> list[Any]:
    """Build the default plugins and the ones named with ``--plugin``, in that order."""
    found = available()
    wanted = list(dict.fromkeys((*DEFAULT_PLUGINS, *names)))
    missing = [name for name in wanted if name not in found]
    if missing:
        raise ConfigError(
            f"--plugin {missing[0]!r} is not installed; available: {', '.join(sorted(found))}"
        )
    return [found[name].load()(config) for name in wanted]
