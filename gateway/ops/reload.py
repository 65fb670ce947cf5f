"""SIGHUP while serving: the config file's reloadable settings and the team key file, again."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass

import structlog
from aiohttp import web

from ..config import CONFIG_ENV, ConfigError, Settings, load_settings, replace_server
from ..state import CACHE, LIVE_SETTINGS, UPSTREAM
from ..upstream.team_key import KeyFileWatcher
from .log import set_log_level
from .reload_policy import plan_reload

log = structlog.get_logger("gateway.reload")


@dataclass(frozen=True, slots=True)
class ConfigSource:
    """Where `serve` took its settings, to take them again: the config file (`--config`, else
    $PARALLEL_GATEWAY_CONFIG, else none: the defaults), then serve's own options over it."""

    path: str | None
    host: str | None = None
    port: int | None = None
    offline: bool = False

    def load(self) -> Settings:
        return replace_server(load_settings(self.path), self.host, self.port, self.offline)

    @property
    def named(self) -> str | None:
        """The file, as the log names it; None without one."""
        return self.path or os.environ.get(CONFIG_ENV) or None


def apply(app: web.Application, settings: Settings) -> None:
    """Put `settings` in force: the one place where a reload reaches the running parts. What
    reads LIVE_SETTINGS at use (the access log switch, request limits) follows by itself; new
    connections take the head limits and header timeout, requests in flight keep theirs."""
    app[LIVE_SETTINGS].current = settings
    set_log_level(settings.log.level)
    app[UPSTREAM].reconfigure(settings.upstream)
    app[CACHE].reconfigure(settings.cache)


def reload_config(app: web.Application, source: ConfigSource) -> None:
    """Read the config again and apply its reloadable settings; a file that is not valid
    changes nothing. Logs what changed, and what needs a restart, by name (never a value)."""
    try:
        loaded = source.load()
    except ConfigError as e:
        log.error(
            "config.reload_failed",
            config=source.named,
            message=f"{e} The settings in force are kept.",
        )
        return
    plan = plan_reload(app[LIVE_SETTINGS].current, loaded)
    apply(app, plan.settings)
    fields = {"config": source.named, "changed": list(plan.changed)}
    if plan.needs_restart:
        log.warning(
            "config.reloaded",
            **fields,
            needs_restart=list(plan.needs_restart),
            message="These settings take effect only on a restart; they are left as they were.",
        )
    else:
        log.info("config.reloaded", **fields, needs_restart=[])


@contextlib.contextmanager
def reload_on_sighup(
    app: web.Application, source: ConfigSource | None, key_file: KeyFileWatcher | None
) -> Iterator[None]:
    """While serving, SIGHUP re-reads the config (when `serve` has a source for it), then the
    team key file (when there is one). SIGHUP never stops the gateway."""
    loop = asyncio.get_running_loop()
    checks: set[asyncio.Task[None]] = set()

    def on_sighup() -> None:
        if source is not None:
            reload_config(app, source)
        if key_file is not None:
            task = loop.create_task(key_file.check("sighup"))
            checks.add(task)
            task.add_done_callback(checks.discard)

    # Only the main thread may handle signals; elsewhere (an embedding) the interval suffices.
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGHUP, on_sighup)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
