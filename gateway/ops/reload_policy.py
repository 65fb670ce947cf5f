"""Which settings a running gateway takes from a re-read config file (SIGHUP). Pure."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..config import Settings

# What a running gateway can apply safely, from the next request, connection or upstream call
# on. Anything else (where it listens, the database, the upstream and its key, the isolation
# mode, the metrics port and token, chore intervals, the short-call slots) is fixed at start.
RELOADABLE = frozenset(
    {
        "log.level",
        "log.access_log",
        "server.max_body_bytes",
        "server.max_line_bytes",
        "server.max_header_bytes",
        "server.max_headers",
        "server.header_timeout",
        "upstream.connect_timeout",
        "upstream.timeout",
        "upstream.deadline",
        "upstream.max_attempts",
        "upstream.backoff_initial",
        "upstream.backoff_max",
        "upstream.retry_after_cap",
        "upstream.queue_timeout",
        "upstream.long_poll_timeout",
        "upstream.stream_idle_timeout",
        "cache.memory_entries",
        "cache.memory_bytes",
        "cache.max_body_bytes",
    }
)


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """What a re-read config file changes."""

    settings: Settings  # the settings in force, with every reloadable change applied
    changed: tuple[str, ...]  # reloadable settings whose value changed, as `section.key`
    needs_restart: tuple[str, ...]  # changed settings left as they were until a restart


def plan_reload(current: Settings, loaded: Settings) -> ReloadPlan:
    """Take from `loaded` (the file as re-read) what RELOADABLE allows; name the rest."""
    changed: list[str] = []
    needs_restart: list[str] = []
    sections: dict[str, Any] = {}
    for section in dataclasses.fields(Settings):
        old, new = getattr(current, section.name), getattr(loaded, section.name)
        taken: dict[str, Any] = {}
        for key in dataclasses.fields(old):
            name = f"{section.name}.{key.name}"
            value = getattr(new, key.name)
            if value == getattr(old, key.name):
                continue
            if name in RELOADABLE:
                changed.append(name)
                taken[key.name] = value
            else:
                needs_restart.append(name)
        sections[section.name] = dataclasses.replace(old, **taken)
    return ReloadPlan(Settings(**sections), tuple(changed), tuple(needs_restart))
