"""Recorded creates: the `create_recordings` table (a match hash, field hashes, the run made)."""

from __future__ import annotations

from typing import Any

import orjson

from ..types import Recording
from .database import SqlDatabase

COLUMNS = "app, match_hash, fields, run_id, recorded_at"
# The same create recorded twice for one run (an import) is one recording.
INSERT = (
    f"INSERT INTO create_recordings ({COLUMNS}) VALUES (?, ?, ?, ?, ?)"  # noqa: S608
    " ON CONFLICT (app, match_hash, run_id) DO NOTHING"
)
NEWEST_FIRST = " ORDER BY recorded_at DESC, app, run_id"


class SqlRecordings:
    """Recordings over one database."""

    def __init__(self, database: SqlDatabase) -> None:
        self.database = database

    async def put(self, recording: Recording) -> bool:
        fields = orjson.dumps(recording.fields, option=orjson.OPT_SORT_KEYS).decode()
        row = (recording.app, recording.match_hash, fields, recording.run_id, recording.recorded_at)
        return await self.database.write(INSERT, row) == 1

    async def matching(self, match_hash: str, app: str | None = None) -> list[Recording]:
        where, params = "match_hash = ?", [match_hash]
        if app is not None:
            where, params = where + " AND app = ?", [*params, app]
        rows = await self.database.fetchall(
            f"SELECT {COLUMNS} FROM create_recordings WHERE {where}{NEWEST_FIRST}",  # noqa: S608
            params,
        )
        return [_recording(row) for row in rows]

    async def list_recordings(
        self, app: str | None = None, limit: int | None = None
    ) -> list[Recording]:
        where, params = ("", []) if app is None else (" WHERE app = ?", [app])
        count = "" if limit is None else f" LIMIT {int(limit)}"
        rows = await self.database.fetchall(
            f"SELECT {COLUMNS} FROM create_recordings{where}{NEWEST_FIRST}{count}",  # noqa: S608
            params,
        )
        return [_recording(row) for row in rows]

    async def has_run(self, run_id: str) -> bool:
        row = await self.database.fetchone(
            "SELECT 1 FROM create_recordings WHERE run_id = ? LIMIT 1", (run_id,)
        )
        return row is not None


def _recording(row: tuple[Any, ...]) -> Recording:
    return Recording(row[0], row[1], dict(orjson.loads(row[2])), row[3], row[4])
