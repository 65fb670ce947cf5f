"""Durable run-input storage: a small interface and its SQLite implementation."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import orjson

from .db import Database


@dataclass(frozen=True, slots=True)
class StoredInput:
    run_id: str
    body: bytes
    stored_at: str  # RFC 3339, UTC


@dataclass(frozen=True, slots=True)
class CacheStats:
    entries: int
    bytes: int
    oldest_stored_at: str | None
    newest_stored_at: str | None


@dataclass(frozen=True, slots=True)
class Purge:
    """One purge: the run ids removed, or None when the whole cache was emptied."""

    seq: int
    run_ids: list[str] | None


class StoreError(Exception):
    """The store failed to read or write; `kind` says why: read-only, disk-full, io, corrupt,
    busy, cannot-open or other."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class RunInputStore(Protocol):
    """Durable run-input storage; a PostgreSQL store would implement the same."""

    async def get(self, run_id: str) -> StoredInput | None:
        """The entry, None if there is none; StoreError if it cannot be read."""

    async def put(self, entry: StoredInput) -> None:
        """Store an entry unless one exists; return only once it is durable (else StoreError)."""

    async def check_writable(self) -> None:
        """Commit a write that changes nothing; StoreError if the store cannot take one."""

    async def put_many(self, entries: Iterable[StoredInput]) -> int:
        """Store entries in one transaction (all or none); return how many were new."""

    def scan(self, run_ids: Sequence[str] = ()) -> AsyncIterator[StoredInput]:
        """Every entry (or those named), in run_id order."""

    async def purge(self, run_ids: Sequence[str] | None) -> int:
        """Remove the runs named (None: all) and record the purge; return how many went."""

    async def purges_since(self, seq: int) -> list[Purge]:
        """Purges recorded after `seq`, oldest first."""

    async def last_purge(self) -> int: ...

    async def stats(self) -> CacheStats:
        """Entries, bytes, oldest and newest; StoreError if they cannot be read."""


def rfc3339(when: datetime) -> str:
    """The gateway's one spelling of a timestamp: UTC, microseconds, `Z`; sorts as text."""
    return when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def now_rfc3339() -> str:
    return rfc3339(datetime.now(UTC))


class SQLiteRunInputStore:
    """Run inputs in the `run_inputs` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, run_id: str) -> StoredInput | None:
        with _store_errors():
            row = await self._db.fetchone(
                "SELECT body, stored_at FROM run_inputs WHERE run_id = ?", (run_id,)
            )
        if row is None:
            return None
        return StoredInput(run_id, bytes(row[0]), row[1])

    async def put(self, entry: StoredInput) -> None:
        with _store_errors():
            await self._db.write(INSERT, _row(entry))

    async def check_writable(self) -> None:
        # Rewriting a row with its own values still writes its page, and commits it: a
        # read-only file or a full disk fails here, as a miss's insert would.
        with _store_errors():
            await self._db.write(
                "UPDATE schema_migrations SET name = name"
                " WHERE version = (SELECT max(version) FROM schema_migrations)"
            )

    async def put_many(self, entries: Iterable[StoredInput]) -> int:
        # A generator streams through the writer in one transaction: memory stays flat, and a
        # kill mid-way leaves nothing of it.
        return await self._db.write_many(INSERT, (_row(entry) for entry in entries))

    async def scan(self, run_ids: Sequence[str] = ()) -> AsyncIterator[StoredInput]:
        if run_ids:
            for run_id in sorted(set(run_ids)):
                entry = await self.get(run_id)
                if entry is not None:
                    yield entry
            return
        after = ""
        while True:
            rows = await self._db.fetchall(
                "SELECT run_id, body, stored_at FROM run_inputs WHERE run_id > ?"
                " ORDER BY run_id LIMIT ?",
                (after, SCAN_PAGE),
            )
            for run_id, body, stored_at in rows:
                yield StoredInput(run_id, bytes(body), stored_at)
            if len(rows) < SCAN_PAGE:
                return
            after = rows[-1][0]

    async def purge(self, run_ids: Sequence[str] | None) -> int:
        record = (
            "INSERT INTO cache_purges (run_ids, purged_at) VALUES (?, ?)",
            [(None if run_ids is None else orjson.dumps(list(run_ids)).decode(), now_rfc3339())],
        )
        if run_ids is None:
            counts = await self._db.transaction([("DELETE FROM run_inputs", [()]), record])
        else:
            delete = ("DELETE FROM run_inputs WHERE run_id = ?", [(r,) for r in run_ids])
            counts = await self._db.transaction([delete, record])
        return counts[0]

    async def purges_since(self, seq: int) -> list[Purge]:
        rows = await self._db.fetchall(
            "SELECT seq, run_ids FROM cache_purges WHERE seq > ? ORDER BY seq", (seq,)
        )
        return [Purge(row[0], None if row[1] is None else orjson.loads(row[1])) for row in rows]

    async def last_purge(self) -> int:
        row = await self._db.fetchone("SELECT coalesce(max(seq), 0) FROM cache_purges")
        return int(row[0]) if row else 0

    async def stats(self) -> CacheStats:
        with _store_errors():
            row = await self._db.fetchone(
                "SELECT count(*), coalesce(sum(size), 0), min(stored_at), max(stored_at)"
                " FROM run_inputs"
            )
        assert row is not None
        return CacheStats(*row)


# An input never changes, so the first stored copy wins and a second put is a no-op.
INSERT = (
    "INSERT INTO run_inputs (run_id, body, size, stored_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (run_id) DO NOTHING"
)
SCAN_PAGE = 1000


# SQLite's primary result codes (https://www.sqlite.org/rescode.html), by the kind reported.
FAULT_KINDS = {
    sqlite3.SQLITE_READONLY: "read-only",
    sqlite3.SQLITE_PERM: "read-only",
    sqlite3.SQLITE_FULL: "disk-full",
    sqlite3.SQLITE_IOERR: "io",
    sqlite3.SQLITE_CORRUPT: "corrupt",
    sqlite3.SQLITE_NOTADB: "corrupt",
    sqlite3.SQLITE_BUSY: "busy",
    sqlite3.SQLITE_LOCKED: "busy",
    sqlite3.SQLITE_CANTOPEN: "cannot-open",
}


def fault_kind(error: BaseException) -> str:
    """What kind of storage fault `error` is, from its SQLite result code ("other" if none)."""
    code = getattr(error, "sqlite_errorcode", None)
    return FAULT_KINDS.get(code & 0xFF, "other") if isinstance(code, int) else "other"


@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    """SQLite's errors, as StoreError with their kind."""
    try:
        yield
    except sqlite3.Error as e:
        raise StoreError(fault_kind(e), str(e)) from e


def _row(entry: StoredInput) -> tuple[str, bytes, int, str]:
    return (entry.run_id, entry.body, len(entry.body), entry.stored_at)
