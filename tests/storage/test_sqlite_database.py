"""The SQLite writer's group commit: one transaction per batch, failures kept apart."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from pathlib import Path

import pytest

from gateway.config import StorageSettings
from gateway.storage.sqlite.database import Database
from gateway.storage.types import StoreError

INSERT = "INSERT INTO t (id, n) VALUES (?, ?)"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(StorageSettings(database=str(tmp_path / "db.sqlite")))
    await database.write("CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER NOT NULL)")
    yield database
    await database.close()


async def rows(db: Database) -> list[tuple[str, int]]:
    return [(r[0], r[1]) for r in await db.fetchall("SELECT id, n FROM t ORDER BY id")]


async def test_concurrent_writes_all_commit_and_count_their_rows(db: Database) -> None:
    counts = await asyncio.gather(*(db.write(INSERT, (f"r{i:02}", i)) for i in range(50)))
    assert counts == [1] * 50
    assert await rows(db) == [(f"r{i:02}", i) for i in range(50)]
    assert await db.write("UPDATE t SET n = n + 1 WHERE n < 10") == 10
    assert await db.write_many(INSERT, [("s1", 1), ("s2", 2)]) == 2


async def test_a_failing_write_fails_alone(db: Database) -> None:
    await db.write(INSERT, ("taken", 0))
    # Queued together, so the writer commits them as one batch: the duplicate must fail only
    # its own caller, and its neighbours must still be committed.
    results = await asyncio.gather(
        db.write(INSERT, ("a", 1)),
        db.write(INSERT, ("taken", 2)),
        db.write(INSERT, ("b", 3)),
        return_exceptions=True,
    )
    assert results[0] == 1
    assert isinstance(results[1], StoreError)
    assert (results[1].kind, str(results[1])) == ("other", "UNIQUE constraint failed: t.id")
    assert isinstance(results[1].__cause__, sqlite3.IntegrityError)
    assert results[2] == 1
    assert await rows(db) == [("a", 1), ("b", 3), ("taken", 0)]


async def test_a_transaction_is_all_or_nothing(db: Database) -> None:
    await db.write(INSERT, ("taken", 0))
    with pytest.raises(StoreError, match=r"^UNIQUE constraint failed: t\.id$"):
        await db.transaction([(INSERT, [("first", 1)]), (INSERT, [("taken", 2)])])
    assert await rows(db) == [("taken", 0)]
    # Nothing was left open: the next write commits.
    assert await db.transaction([(INSERT, [("x", 1), ("y", 2)]), (INSERT, [("z", 3)])]) == [2, 1]
    assert await rows(db) == [("taken", 0), ("x", 1), ("y", 2), ("z", 3)]


async def test_a_streamed_write_commits_every_row_or_none(db: Database) -> None:
    def good() -> Iterator[tuple[str, int]]:
        for i in range(1000):
            yield f"g{i:04}", i

    def broken() -> Iterator[tuple[str, int]]:
        yield "b1", 1
        raise ValueError("the source failed mid-stream")

    assert await db.write_many(INSERT, good()) == 1000
    with pytest.raises(ValueError, match="mid-stream"):
        await db.write_many(INSERT, broken())
    assert len(await rows(db)) == 1000
    assert await db.fetchone("SELECT 1 FROM t WHERE id = 'b1'") is None


async def test_close_commits_what_is_queued(tmp_path: Path) -> None:
    settings = StorageSettings(database=str(tmp_path / "db.sqlite"))
    db = await Database.open(settings)
    await db.write("CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER NOT NULL)")
    pending = [asyncio.ensure_future(db.write(INSERT, (f"r{i}", i))) for i in range(20)]
    await asyncio.sleep(0)  # queued, not yet committed
    await db.close()
    assert [p.result() for p in pending] == [1] * 20
    with sqlite3.connect(settings.database) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (20,)


async def test_a_held_lock_fails_each_write_once_never_retrying_it(tmp_path: Path) -> None:
    settings = StorageSettings(database=str(tmp_path / "db.sqlite"), busy_timeout_ms=50)
    db = await Database.open(settings)
    try:
        await db.write("CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER NOT NULL)")
        tried = db.write_attempts
        with closing(sqlite3.connect(settings.database, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            results = await asyncio.gather(
                *(db.write(INSERT, (f"r{i}", i)) for i in range(30)), return_exceptions=True
            )
            other.execute("ROLLBACK")
        assert [isinstance(r, StoreError) and r.kind == "busy" for r in results] == [True] * 30
        # Each write was handed to SQLite once: a failed batch is not retried write by write,
        # which made each write wait busy_timeout again.
        assert db.write_attempts - tried == 30
        assert await db.write(INSERT, ("after", 1)) == 1
        assert await rows(db) == [("after", 1)]
    finally:
        await db.close()
