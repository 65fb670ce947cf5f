"""Replica usage: each replica's admitted and open calls per app, shared through the store."""

from __future__ import annotations

from collections.abc import Sequence

from ..types import Usage
from .database import SqlDatabase

# Rows of a replica not heard from in this long are its last words: it is gone.
FORGET_AFTER = 3600.0


class SqlReplicaUsage:
    """ReplicaUsage over one database."""

    def __init__(self, database: SqlDatabase) -> None:
        self.database = database

    async def exchange(
        self, replica: str, mine: Sequence[Usage], now: float, since: float
    ) -> list[Usage]:
        rows = [(replica, u.app, u.taken, u.open, u.started, now) for u in mine]
        await self.database.transaction(
            [
                (
                    "INSERT INTO replica_usage (replica, app, taken, open, started, at)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (replica, app) DO UPDATE"
                    " SET taken = excluded.taken, open = excluded.open, started = excluded.started,"
                    " at = excluded.at",
                    rows,
                ),
                ("DELETE FROM replica_usage WHERE at < ?", [(now - FORGET_AFTER,)]),
            ]
        )
        found = await self.database.fetchall(
            "SELECT replica, app, taken, open, started FROM replica_usage"
            " WHERE replica <> ? AND at >= ? ORDER BY replica, app",
            (replica, since),
        )
        return [Usage(*row) for row in found]

    async def leave(self, replica: str) -> None:
        await self.database.write("DELETE FROM replica_usage WHERE replica = ?", (replica,))
