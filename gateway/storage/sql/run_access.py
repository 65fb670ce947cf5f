"""Run ownership: the `run_access` table, one row per app and run it may read."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..types import Access
from .database import SqlDatabase


class SqlRunAccess:
    """RunAccess over one database."""

    def __init__(self, database: SqlDatabase) -> None:
        self.database = database

    async def record_created(self, app: str, ids: Sequence[str], at: str) -> None:
        await self.database.write_many(
            "INSERT INTO run_access (id, app, how, at) VALUES (?, ?, 'created', ?)"
            " ON CONFLICT (id, app) DO NOTHING",
            [(run_id, app, at) for run_id in ids],
        )

    async def grant(self, run_id: str, app: str, at: str) -> bool:
        changed = await self.database.write(
            "INSERT INTO run_access (id, app, how, at) VALUES (?, ?, 'granted', ?)"
            " ON CONFLICT (id, app) DO NOTHING",
            (run_id, app, at),
        )
        return changed == 1

    async def may_read(self, app: str, ids: Iterable[str]) -> bool:
        for run_id in ids:
            row = await self.database.fetchone(
                "SELECT 1 FROM run_access WHERE id = ? AND app = ?", (run_id, app)
            )
            if row is None:
                return False
        return True

    async def list_records(self, app: str | None = None) -> list[Access]:
        if app is None:
            rows = await self.database.fetchall(
                "SELECT id, app, how, at FROM run_access ORDER BY app, at, id"
            )
        else:
            rows = await self.database.fetchall(
                "SELECT id, app, how, at FROM run_access WHERE app = ? ORDER BY at, id", (app,)
            )
        return [Access(*row) for row in rows]

    async def revoke(self, run_id: str, app: str) -> str | None:
        row = await self.database.fetchone(
            "SELECT how FROM run_access WHERE id = ? AND app = ?", (run_id, app)
        )
        if row is None:
            return None
        removed = await self.database.write(
            "DELETE FROM run_access WHERE id = ? AND app = ?", (run_id, app)
        )
        how: str = row[0]
        return how if removed else None
