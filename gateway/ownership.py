"""Run ownership for [isolation] mode = "app": who created or was granted each run and group."""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from .catalog import Creates
from .db import Database
from .store import now_rfc3339

# The field of a create's answer that names what it created (the SDK's types).
CREATED_ID = {
    Creates.RUN: "run_id",
    Creates.GROUP: "taskgroup_id",
    Creates.FINDALL: "findall_id",
    Creates.MONITOR: "monitor_id",
}


class GrantError(Exception):
    """A grant that cannot be made (an unknown app)."""


def created_ids(creates: Creates, body: bytes) -> list[str]:
    """The ids a successful create answered with; [] for a body without them. Pure."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []
    if not isinstance(data, dict):
        return []
    ids = data.get("run_ids") if creates is Creates.GROUP_RUNS else [data.get(CREATED_ID[creates])]
    if not isinstance(ids, list):
        return []
    return [i for i in ids if isinstance(i, str) and i]


async def record_created(db: Database, app: str, ids: Iterable[str]) -> None:
    at = now_rfc3339()
    await db.write_many(
        "INSERT INTO run_access (id, app, how, at) VALUES (?, ?, 'created', ?)"
        " ON CONFLICT (id, app) DO NOTHING",
        [(run_id, app, at) for run_id in ids],
    )


async def grant(db: Database, run_id: str, app: str) -> bool:
    """Let `app` read `run_id`; False if it already could."""
    if await db.fetchone("SELECT 1 FROM app_keys WHERE name = ?", (app,)) is None:
        raise GrantError(f"No app named {app!r}.")
    changed = await db.write(
        "INSERT INTO run_access (id, app, how, at) VALUES (?, ?, 'granted', ?)"
        " ON CONFLICT (id, app) DO NOTHING",
        (run_id, app, now_rfc3339()),
    )
    return changed == 1


async def may_read(db: Database, app: str, ids: Iterable[str | None]) -> bool:
    """Whether `app` created, or was granted, every id given (None ids are ignored)."""
    for run_id in ids:
        if run_id is None:
            continue
        row = await db.fetchone("SELECT 1 FROM run_access WHERE id = ? AND app = ?", (run_id, app))
        if row is None:
            return False
    return True
