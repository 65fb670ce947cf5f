"""Durable run-input storage: a small interface and its SQLite implementation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from .db import Database


@dataclass(frozen=True, slots=True)
class StoredInput:
    run_id: str
    body: bytes
    stored_at: str  # RFC 3339, UTC


class RunInputStore(Protocol):
    """What the cache needs from durable storage; a PostgreSQL store would implement the same."""

    async def get(self, run_id: str) -> StoredInput | None: ...

    async def put(self, entry: StoredInput) -> None:
        """Store an entry; return only once it is durable."""


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class SQLiteRunInputStore:
    """Run inputs in the `run_inputs` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, run_id: str) -> StoredInput | None:
        row = await self._db.fetchone(
            "SELECT body, stored_at FROM run_inputs WHERE run_id = ?", (run_id,)
        )
        if row is None:
            return None
        return StoredInput(run_id, bytes(row[0]), row[1])

    async def put(self, entry: StoredInput) -> None:
        # An input never changes, so the first stored copy wins and a second put is a no-op.
        await self._db.write(
            "INSERT INTO run_inputs (run_id, body, size, stored_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (run_id) DO NOTHING",
            (entry.run_id, entry.body, len(entry.body), entry.stored_at),
        )
