"""Run inputs and purges of runs: the `run_inputs` and `cache_purges` tables (a purge takes a
run's `final_answers` and `create_recordings` too)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence

import orjson

from ...timestamps import now_rfc3339
from ..types import CacheStats, Purge, StoredInput
from .database import SqlDatabase, Statement

# An input never changes, so the first stored copy wins and a second put is a no-op.
INSERT = (
    "INSERT INTO run_inputs (run_id, body, size, stored_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (run_id) DO NOTHING"
)
SCAN_PAGE = 1000
STORED_RUN = (
    "SELECT 1 FROM run_inputs WHERE run_id = ?"
    " UNION ALL SELECT 1 FROM final_answers WHERE run_id = ?"
    " UNION ALL SELECT 1 FROM create_recordings WHERE run_id = ? LIMIT 1"
)


class SqlRunInputs:
    """RunInputs and Purges over one database."""

    def __init__(self, database: SqlDatabase) -> None:
        self.database = database

    async def get(self, run_id: str) -> StoredInput | None:
        row = await self.database.fetchone(
            "SELECT body, stored_at FROM run_inputs WHERE run_id = ?", (run_id,)
        )
        if row is None:
            return None
        return StoredInput(run_id, bytes(row[0]), row[1])

    async def put(self, entry: StoredInput) -> None:
        await self.database.write(INSERT, _row(entry))

    async def put_many(self, entries: Iterable[StoredInput]) -> int:
        # A generator streams through the writer in one transaction: memory stays flat, and a
        # kill mid-way leaves nothing of it.
        return await self.database.write_many(INSERT, (_row(entry) for entry in entries))

    async def scan(self, run_ids: Sequence[str] = ()) -> AsyncIterator[StoredInput]:
        if run_ids:
            for run_id in sorted(set(run_ids)):
                entry = await self.get(run_id)
                if entry is not None:
                    yield entry
            return
        after = ""
        while True:
            rows = await self.database.fetchall(
                "SELECT run_id, body, stored_at FROM run_inputs WHERE run_id > ?"
                " ORDER BY run_id LIMIT ?",
                (after, SCAN_PAGE),
            )
            for run_id, body, stored_at in rows:
                yield StoredInput(run_id, bytes(body), stored_at)
            if len(rows) < SCAN_PAGE:
                return
            after = rows[-1][0]

    async def stats(self) -> CacheStats:
        row = await self.database.fetchone(
            "SELECT count(*), coalesce(sum(size), 0), min(stored_at), max(stored_at)"
            " FROM run_inputs"
        )
        assert row is not None
        return CacheStats(*row)

    async def purge(self, run_ids: Sequence[str] | None) -> int:
        # A run's final answers and recordings go with its input: a purge removes all the cache
        # knows of it.
        record = (
            "INSERT INTO cache_purges (run_ids, purged_at) VALUES (?, ?)",
            [(None if run_ids is None else orjson.dumps(list(run_ids)).decode(), now_rfc3339())],
        )
        if run_ids is None:
            row = await self.database.fetchone(
                "SELECT count(*) FROM (SELECT run_id FROM run_inputs"
                " UNION SELECT run_id FROM final_answers"
                " UNION SELECT run_id FROM create_recordings) AS stored"
            )
            removed = int(row[0]) if row else 0
            deletes: list[Statement] = [
                ("DELETE FROM run_inputs", [()]),
                ("DELETE FROM final_answers", [()]),
                ("DELETE FROM create_recordings", [()]),
            ]
        else:
            removed = 0
            for run_id in run_ids:
                stored = await self.database.fetchone(STORED_RUN, (run_id, run_id, run_id))
                removed += stored is not None
            rows = [(run_id,) for run_id in run_ids]
            deletes = [
                ("DELETE FROM run_inputs WHERE run_id = ?", rows),
                ("DELETE FROM final_answers WHERE run_id = ?", rows),
                ("DELETE FROM create_recordings WHERE run_id = ?", rows),
            ]
        # Counted before, for the count said: a run stored meanwhile may go uncounted.
        await self.database.transaction([*deletes, record])
        return removed

    async def purges_since(self, seq: int) -> list[Purge]:
        rows = await self.database.fetchall(
            "SELECT seq, run_ids FROM cache_purges WHERE seq > ? ORDER BY seq", (seq,)
        )
        return [Purge(row[0], None if row[1] is None else orjson.loads(row[1])) for row in rows]

    async def last_purge(self) -> int:
        row = await self.database.fetchone("SELECT coalesce(max(seq), 0) FROM cache_purges")
        return int(row[0]) if row else 0


def _row(entry: StoredInput) -> tuple[str, bytes, int, str]:
    return (entry.run_id, entry.body, len(entry.body), entry.stored_at)
