"""The twistd entry point: ``twistd bullmq-proxy`` options and ``makeService``.

Importing this module installs Twisted's asyncio reactor unless a reactor is already
installed; twistd imports it only when the bullmq-proxy subcommand is chosen, so other
twistd plugins are not affected.
"""

from __future__ import annotations

import gc
import os
import platform
import shutil
import sys
import tempfile
from typing import Any

import attrs
from twisted.application.service import MultiService
from twisted.copyright import version as twisted_version
from twisted.python import usage

from bullmq_proxy import __version__
from bullmq_proxy.bridge import install_asyncio_reactor

if "twisted.internet.reactor" not in sys.modules:
    install_asyncio_reactor()

from twisted.internet import reactor

from bullmq_proxy.config import SETTINGS, Config, ConfigError, load_config
from bullmq_proxy.logs import TWISTD_OBSERVER, twistd_observer
from bullmq_proxy.processes import (
    CHILD_ENV,
    ChildProcessesService,
    ParentWatchService,
    ProcessesError,
    child_argv,
    reuseport_listeners,
)
from bullmq_proxy.service import build_service
from bullmq_proxy.summed_metrics import METRICS_DIR_ENV


def _help(env: str | None, text: str, default: Any) -> str:
    source = f" [env {env}]" if env else ""
    shown = f" (default: {default})" if default not in (None, (), "", False) else ""
    return f"{text}{source}{shown}"


FLAGS = tuple(s for s in SETTINGS if s.is_flag)


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run the BullMQ proxy. Every option can also be given by its environment variable; "
        "options win over the environment."
    )
    optParameters = [  # noqa: RUF012 - Twisted reads this class attribute
        [s.option, None, None, _help(s.env, s.help, s.default)] for s in SETTINGS
        if not s.is_flag
    ]
    optFlags = [
        [s.option, None, _help(s.env, s.help, s.default)] for s in FLAGS
    ] + [[f"no-{s.option}", None, f"Turn --{s.option} off, whatever {s.env} says"]
         for s in FLAGS]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["plugin"] = []
        self["processes"] = 1
        self.config: Config | None = None

    def opt_version(self) -> None:
        """Print the proxy's version and exit."""
        print(f"bullmq-proxy {__version__} (Twisted {twisted_version}, "
              f"Python {platform.python_version()})")
        sys.exit(0)

    def opt_listen(self, description: str) -> None:
        """A Twisted server endpoint to listen on, e.g. tcp:8080 or
        systemd:domain=INET:index=0 (repeatable; default tcp:$PORT or tcp:8080)."""
        self["listen"].append(description)

    def opt_plugin(self, name: str) -> None:
        """Enable an optional plugin from the bullmq_proxy.plugins entry points
        (repeatable)."""
        self["plugin"].append(name)

    def opt_processes(self, count: str) -> None:
        """Run this many proxy processes sharing the tcp: ports with SO_REUSEPORT
        (default 1; needs an external Redis)."""
        try:
            self["processes"] = int(count)
        except ValueError:
            raise usage.UsageError(f"--processes must be an integer, got {count!r}") from None
        if self["processes"] < 1:
            raise usage.UsageError("--processes must be at least 1")

    def passed_settings(self) -> list[str]:
        """The settings given on the command line, to hand on to copies of this process."""
        argv = []
        for setting in SETTINGS:
            value = self[setting.option]
            if value is None:
                continue
            if setting.is_flag:
                argv.append(f"--{'' if value == 'true' else 'no-'}{setting.option}")
            else:
                argv.append(f"--{setting.option}={value}")
        return argv + [f"--plugin={name}" for name in self["plugin"]]

    def _flags_as_settings(self) -> None:
        """A flag given is the setting's "true" or "false"; neither leaves it to the env."""
        for setting in FLAGS:
            on, off = self[setting.option], self[f"no-{setting.option}"]
            if on and off:
                raise usage.UsageError(
                    f"--{setting.option} and --no-{setting.option} contradict each other")
            self[setting.option] = "true" if on else "false" if off else None

    def postOptions(self) -> None:
        from twisted.internet.asyncioreactor import AsyncioSelectorReactor

        if not isinstance(reactor, AsyncioSelectorReactor):
            raise usage.UsageError(
                "bullmq-proxy runs on Twisted's asyncio reactor; drop --reactor "
                "(or pass --reactor=asyncio)"
            )
        self._flags_as_settings()
        try:
            self.config = load_config(
                os.environ, self, tuple(self["listen"]), tuple(self["plugin"])
            )
        except ConfigError as err:
            raise SystemExit(f"bullmq-proxy: {err}") from None
        twistd = self.parent
        if twistd is not None and twistd["logger"] is None and not twistd.get("syslog"):
            # twistd resolves its --logger option by name once all options are parsed.
            twistd_observer.log_format = self.config.log_format
            twistd_observer.debug = self.config.debug
            twistd_observer.logfile = twistd["logfile"] or (
                None if twistd["nodaemon"] else "twistd.log")
            twistd["logger"] = TWISTD_OBSERVER


# Young objects allowed before a collection. Nearly everything a request allocates is freed
# by reference counting when it ends, but at the default of 700 the hundred requests in
# flight under load pass the threshold all the time: about 5,000 collections in a 10 s
# run of adds, 5 % of the CPU, that found almost nothing. At 10,000 the same run made 4.
YOUNG_THRESHOLD = 10_000


def freeze_startup_heap() -> None:
    """Put everything allocated while starting (modules, services) out of the collector's
    reach, so that full collections scan only what requests allocate: their pauses were
    the proxy's worst tail latencies under load. Then collect young objects less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def makeService(options: Options) -> MultiService:
    assert options.config is not None, "postOptions builds the configuration"
    config = options.config
    # Where the processes serve their metrics to each other (summed_metrics.py).
    metrics_dir = os.environ.get(METRICS_DIR_ENV) if os.environ.get(CHILD_ENV) else None
    try:
        if options["processes"] > 1:
            if config.redis.embedded:
                raise ProcessesError("--processes needs an external Redis (REDIS_URL)")
            config = attrs.evolve(config, listen=reuseport_listeners(config.listen))
            metrics_dir = tempfile.mkdtemp(prefix="bullmq-proxy-metrics-")
            reactor.addSystemEventTrigger("after", "shutdown", shutil.rmtree, metrics_dir,
                                          True)
        top = build_service(config, reactor, metrics_dir)
    except (ConfigError, ProcessesError) as err:
        raise SystemExit(f"bullmq-proxy: {err}") from None
    reactor.callWhenRunning(freeze_startup_heap)
    if options["processes"] == 1 and not os.environ.get(CHILD_ENV):
        return top
    # The copies stop beside this process's own ordered stop, not as one of its steps: every
    # process drains at the same time, and this one exits only once the copies have.
    both = MultiService()
    top.setServiceParent(both)
    if options["processes"] > 1:
        argv = child_argv(config.listen, options.passed_settings())
        ChildProcessesService(reactor, argv, options["processes"] - 1,
                              {METRICS_DIR_ENV: metrics_dir},
                              config.worker_shutdown_grace).setServiceParent(both)
    if os.environ.get(CHILD_ENV):
        ParentWatchService(reactor).setServiceParent(both)
    return both
