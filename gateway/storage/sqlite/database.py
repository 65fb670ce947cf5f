"""SQLite connections: PRAGMAs, one reader, and the one writer that batches commits."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from queue import SimpleQueue
from typing import Any, TypeVar

from ...config import StorageSettings
from ..types import StorageError
from .errors import is_busy, store_error
from .migrate import apply_migrations

Params = Sequence[Any]
Statement = tuple[str, Iterable[Params]]
WRITE_BATCH = 256
T = TypeVar("T")


class Connection:
    """A sqlite3 connection owned by a thread of its own: each call is one hop there and back
    (a SimpleQueue in, call_soon_threadsafe out), as aiosqlite's own thread made, in public API."""

    def __init__(self, name: str) -> None:
        self._calls: SimpleQueue[_Call | None] = SimpleQueue()  # None: stop
        self._thread = threading.Thread(target=_serve, args=(self._calls,), name=name, daemon=True)
        self._conn: sqlite3.Connection | None = None

    @classmethod
    async def open(cls, settings: StorageSettings, name: str) -> Connection:
        """Connect in the connection's own thread, with the PRAGMAs every connection needs."""
        connection = cls(name)
        connection._thread.start()
        try:
            connection._conn = await connection._call(lambda: _connect(settings))
        except BaseException:
            connection._stop()
            raise
        return connection

    async def run(self, call: Callable[[sqlite3.Connection], T]) -> T:
        """`call(conn)` in the connection's thread. Blocking calls belong there, and only there."""
        conn = self._conn
        assert conn is not None
        return await self._call(lambda: call(conn))

    async def close(self) -> None:
        await self.run(sqlite3.Connection.close)
        self._stop()

    def _call(self, function: Callable[[], T]) -> asyncio.Future[T]:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._calls.put((future, function))
        return future

    def _stop(self) -> None:
        self._calls.put(None)
        self._thread.join()


_Call = tuple["asyncio.Future[Any]", Callable[[], Any]]


def _serve(calls: SimpleQueue[_Call | None]) -> None:
    """A connection's thread: run each call, and hand its outcome to its loop."""
    while (call := calls.get()) is not None:
        future, function = call
        try:
            result = function()
        except BaseException as e:  # handed to the waiter, never lost in this thread
            future.get_loop().call_soon_threadsafe(_settle, future, e)
        else:
            future.get_loop().call_soon_threadsafe(_settle, future, result)


def _connect(settings: StorageSettings) -> sqlite3.Connection:
    """Open the database file (its directory made if need be), autocommit mode, PRAGMAs set."""
    path = Path(settings.database).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        # busy_timeout first: switching to WAL itself needs a lock another process may hold.
        conn.execute(f"PRAGMA busy_timeout = {int(settings.busy_timeout_ms)}")
        conn.execute("PRAGMA journal_mode = WAL")
        # In WAL mode, NORMAL already survives a process crash (kill -9); FULL also a power loss.
        conn.execute(f"PRAGMA synchronous = {settings.synchronous.upper()}")
    except BaseException:
        conn.close()
        raise
    return conn


class Database:
    """A reader connection, and a writer connection fed by one task.

    SQLite allows one writer at a time, so every write goes through `write`, which queues it;
    the writer task commits whatever has queued up in one transaction (group commit), and
    `write` returns only once its statements are committed.

    A write waits at most `storage.busy_timeout_ms` in all for another process's lock, counted
    from when it was queued: its transaction waits only what is left of the earliest deadline
    in its batch, and a batch that found the lock busy fails whole, never retried write by
    write (each would wait again).
    """

    def __init__(
        self,
        reader: Connection,
        writer: Connection,
        applied_migrations: list[str] | None = None,
        busy_timeout_ms: int = StorageSettings().busy_timeout_ms,
    ) -> None:
        self._reader = reader
        self.applied_migrations = applied_migrations or []
        self.write_attempts = 0  # writes handed to SQLite, a retried one counted again
        self._writer = writer
        self._busy_timeout = busy_timeout_ms / 1000
        self._queue: asyncio.Queue[_Write | None] = asyncio.Queue()  # None: close
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, settings: StorageSettings) -> Database:
        """Connect, apply pending migrations, and return the database."""
        try:
            writer = await Connection.open(settings, "sqlite-writer")
        except (OSError, sqlite3.Error) as e:
            raise StorageError(f"Cannot open database '{settings.database}': {e}.") from e
        try:
            applied = await writer.run(apply_migrations)
            reader = await Connection.open(settings, "sqlite-reader")
        except sqlite3.Error as e:
            await writer.close()
            raise StorageError(f"Cannot migrate database '{settings.database}': {e}.") from e
        except BaseException:
            await writer.close()
            raise
        return cls(reader, writer, applied, settings.busy_timeout_ms)

    async def fetchone(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        """The first row; for queries of one row at most (a key lookup), in one round trip."""
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """The rows of a query, on the reader, in one round trip to its thread."""
        try:
            return await self._reader.run(lambda conn: conn.execute(sql, params).fetchall())
        except sqlite3.Error as e:
            raise store_error(e) from e

    async def write(self, sql: str, params: Params = ()) -> int:
        """Run one write statement; return its row count once committed."""
        return (await self.transaction([(sql, [params])]))[0]

    async def write_many(self, sql: str, rows: Iterable[Params]) -> int:
        """Run one statement over many rows in one transaction; return the rows changed."""
        return (await self.transaction([(sql, rows)]))[0]

    async def transaction(self, statements: Sequence[Statement]) -> list[int]:
        """Run statements, each over its rows, in one transaction; return each one's row count.

        Rows may be a generator (an import streams through one): that write is committed on
        its own, since a consumed generator cannot be retried. SQLite's errors are raised as
        StoreError; any other (a generator's own) as it is.
        """
        if self._task is None:
            self._task = asyncio.create_task(self._run_writer(), name="sqlite-writer")
        done = asyncio.get_running_loop().create_future()
        write = _Write(statements, done, time.monotonic() + self._busy_timeout)
        self._queue.put_nowait(write)
        try:
            return await write.done
        except sqlite3.Error as e:
            raise store_error(e) from e

    async def _run_writer(self) -> None:
        while True:
            items = [await self._queue.get()]
            while len(items) < WRITE_BATCH and not self._queue.empty():
                items.append(self._queue.get_nowait())
            writes = [item for item in items if item is not None]
            for batch in _batches(writes):
                await self._commit(batch)
            if len(writes) < len(items):  # close() queued its None after the last write
                return

    async def _commit(self, batch: list[_Write]) -> None:
        self.write_attempts += len(batch)
        try:
            # The whole transaction in one hop to the writer's thread: a statement at a time,
            # BEGIN, INSERT, cursor close and COMMIT took four round trips between threads,
            # about two-thirds of a miss's added latency.
            counts = await self._writer.run(lambda conn: _commit_batch(conn, batch))
        except Exception as e:  # any failure is handed to the waiters, never lost
            if len(batch) > 1 and not is_busy(e):
                # One bad write must not fail its neighbours: retry them one by one (each
                # within what is left of its own wait).
                for write in batch:
                    await self._commit([write])
                return
            # A busy lock is every write's failure alike: retrying would only wait again.
            for write in batch:
                _settle(write.done, e)
            return
        for write, count in zip(batch, counts, strict=True):
            _settle(write.done, count)

    async def close(self) -> None:
        """Commit what is queued, then close both connections."""
        if self._task is not None:
            self._queue.put_nowait(None)
            await self._task
        await self._reader.close()
        await self._writer.close()


class _Write:
    __slots__ = ("deadline", "done", "solo", "statements")

    def __init__(
        self, statements: Sequence[Statement], done: asyncio.Future[list[int]], deadline: float
    ) -> None:
        self.statements = statements
        self.done = done
        self.deadline = deadline  # time.monotonic() past which it waits for no lock
        self.solo = not all(isinstance(rows, Sequence) for _, rows in statements)


def _batches(writes: list[_Write]) -> Iterator[list[_Write]]:
    """Consecutive writes share a transaction; a streaming (solo) write gets its own."""
    batch: list[_Write] = []
    for write in writes:
        if write.solo:
            if batch:
                yield batch
                batch = []
            yield [write]
        else:
            batch.append(write)
    if batch:
        yield batch


def _settle(done: asyncio.Future[Any], result: object) -> None:
    """Hand `result` (an exception: raise it) to `done`'s waiter, if it still waits."""
    if done.done():  # the waiter was cancelled; the call still happened (or failed) for good
        return
    if isinstance(result, BaseException):
        done.set_exception(result)
    else:
        done.set_result(result)


def _commit_batch(conn: sqlite3.Connection, batch: list[_Write]) -> list[list[int]]:
    """Run a batch's statements in one transaction; each write's row counts. Blocking: this
    runs on the writer's thread, which owns `conn`."""
    # Wait for another process's lock only until the batch's earliest deadline (0: try once).
    wait = min(write.deadline for write in batch) - time.monotonic()
    conn.execute(f"PRAGMA busy_timeout = {max(0, int(wait * 1000))}")
    conn.execute("BEGIN IMMEDIATE")
    try:
        counts = [
            [conn.executemany(sql, rows).rowcount for sql, rows in write.statements]
            for write in batch
        ]
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return counts
