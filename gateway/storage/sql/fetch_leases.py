"""Fetch leases: which replica fetches a cold run from Parallel, while the others wait for it."""

from __future__ import annotations

from .database import SqlDatabase

# Taken if the run is not stored, and there is no lease on it or only one past its time. A
# lease that is held is left as it is (the WHERE fails, no row changes): the count says who
# won. Checking the store in the same statement saves the round trip of a second look.
TAKE = (
    "INSERT INTO fetch_leases (run_id, owner, until)"
    " SELECT CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS DOUBLE PRECISION)"
    " WHERE NOT EXISTS (SELECT 1 FROM run_inputs WHERE run_id = ?)"
    " ON CONFLICT (run_id) DO UPDATE SET owner = excluded.owner, until = excluded.until"
    " WHERE fetch_leases.until < ?"
)


class SqlFetchLeases:
    """FetchLeases over one database. Times are POSIX seconds from the caller's clock."""

    def __init__(self, database: SqlDatabase) -> None:
        self.database = database

    async def take(self, run_id: str, owner: str, now: float, until: float) -> bool:
        return await self.database.write(TAKE, (run_id, owner, until, run_id, now)) == 1

    async def renew(self, run_id: str, owner: str, until: float) -> bool:
        renewed = await self.database.write(
            "UPDATE fetch_leases SET until = ? WHERE run_id = ? AND owner = ?",
            (until, run_id, owner),
        )
        return renewed == 1

    async def release(self, run_id: str, owner: str) -> None:
        await self.database.write(
            "DELETE FROM fetch_leases WHERE run_id = ? AND owner = ?", (run_id, owner)
        )
