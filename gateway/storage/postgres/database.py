"""PostgreSQL connections: one pool (psycopg-pool), each statement or transaction on one
connection taken from it, and PostgreSQL's errors as the StoreError kinds every backend reports."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import psycopg
import structlog
from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ...config import StorageSettings
from ..location import redacted
from ..types import StorageError, StoreError
from .migrate import apply_migrations

log = structlog.get_logger("gateway.storage")
Params = Sequence[Any]
UNREACHABLE = "The database is out of reach; the gateway keeps trying to reconnect."
PROBE_INITIAL = 0.1  # seconds before the first try to reconnect, doubled up to PROBE_MAX
PROBE_MAX = 2.0
Statement = tuple[str, Iterable[Params]]
# How long a connection may take to open; a server that does not answer fails in this time.
CONNECT_TIMEOUT = 5
CONNECTION_OPTIONS: dict[str, Any] = {
    "autocommit": True,
    "connect_timeout": CONNECT_TIMEOUT,
    "application_name": "parallel-gateway",
    # A server gone without a word (a partition, a dead host) is noticed in about 10 s, not
    # after the kernel's TCP timeouts of many minutes.
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 2,
    "tcp_user_timeout": 10_000,
}

# SQLSTATE classes and codes (https://www.postgresql.org/docs/current/errcodes-appendix.html),
# by the kind reported; a code is looked up first, then its class (its first two characters).
FAULT_KINDS = {
    "25006": "read-only",  # read_only_sql_transaction: a standby, or default_transaction_read_only
    "42501": "read-only",  # insufficient_privilege
    "53100": "disk-full",
    "53": "busy",  # insufficient resources: out of memory, too many connections
    "58": "io",  # system error (an I/O error on the server)
    "XX001": "corrupt",  # data_corrupted
    "XX002": "corrupt",  # index_corrupted
    "40": "busy",  # transaction rollback: serialization failure, deadlock
    "55P03": "busy",  # lock_not_available (lock_timeout)
    "57014": "busy",  # query_canceled (statement_timeout)
    "08": "cannot-open",  # connection exceptions
    "57P": "cannot-open",  # the server shutting down, or the connection terminated
}


@lru_cache(maxsize=256)
def dialect(query: str) -> bytes:
    """A query written with ? placeholders, as psycopg takes it (%s, and % doubled). Pure."""
    return query.replace("%", "%%").replace("?", "%s").encode()


def fault_kind(error: BaseException) -> str:
    """What kind of storage fault `error` is ("other" if none other fits)."""
    if isinstance(error, PoolTimeout):
        return "cannot-open"  # no connection could be had in time: the server is out of reach
    state = getattr(error, "sqlstate", None)
    if isinstance(state, str):
        for key in (state, state[:3], state[:2]):
            if key in FAULT_KINDS:
                return FAULT_KINDS[key]
    if isinstance(error, psycopg.OperationalError):
        return "cannot-open"  # a connection lost or refused carries no SQLSTATE
    return "other"


def store_error(error: BaseException) -> StoreError:
    converted = StoreError(fault_kind(error), str(error).strip())
    converted.__cause__ = error
    return converted


FAULTS = (psycopg.Error, PoolTimeout)


class PgDatabase:
    """A pool of connections to one PostgreSQL database, in autocommit mode. Queries are
    written with ? placeholders, as for SQLite: both backends share them."""

    def __init__(
        self, pool: AsyncConnectionPool[Any], applied_migrations: list[str], url: str
    ) -> None:
        self.pool = pool
        self.applied_migrations = applied_migrations
        self._url = url
        # While the server is out of reach, every call fails at once (a call would otherwise
        # wait the pool's whole timeout), and one task tries to connect until it can.
        self._probe: asyncio.Task[None] | None = None

    @property
    def reachable(self) -> bool:
        return self._probe is None

    @classmethod
    async def open(cls, settings: StorageSettings) -> PgDatabase:
        """Connect, apply pending migrations (each exactly once, whichever replica starts
        first), and return the database; StorageError if it cannot be."""
        where = redacted(settings.database)
        timeout = settings.busy_timeout_ms / 1000

        async def configure(conn: AsyncConnection[Any]) -> None:
            # A statement waits at most busy_timeout_ms for a lock another session holds.
            await conn.execute(
                sql.SQL("SET lock_timeout = {}").format(
                    sql.Literal(f"{settings.busy_timeout_ms}ms")
                )
            )

        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            settings.database,
            min_size=1,
            max_size=settings.pool_size,
            open=False,
            timeout=timeout,
            kwargs=dict(CONNECTION_OPTIONS),
            configure=configure,
            name="gateway",
        )
        try:
            # One connection first, not the pool: a refusal is reported at once, with its cause
            # (the pool would retry it in the background until its timeout).
            conn = await AsyncConnection.connect(settings.database, **CONNECTION_OPTIONS)
        except psycopg.Error as e:
            raise StorageError(
                f"Cannot connect to database {where}: {_said(e, settings)}."
            ) from None
        try:
            async with conn:
                applied = await apply_migrations(conn)
        except psycopg.Error as e:
            said = _said(e, settings)
            raise StorageError(f"Cannot migrate database {where}: {said}.") from None
        try:
            await pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except PoolTimeout:
            await pool.close()
            raise StorageError(
                f"Cannot connect to database {where}: no connection in time."
            ) from None
        return cls(pool, applied, settings.database)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection[Any]]:
        """A connection from the pool; PostgreSQL's errors raised as StoreError."""
        if self._probe is not None:
            raise StoreError("cannot-open", UNREACHABLE)
        try:
            async with self.pool.connection() as conn:
                yield conn
        except FAULTS as e:
            error = store_error(e)
            if error.kind == "cannot-open" and self._probe is None and not self.pool.closed:
                self._probe = asyncio.create_task(self._until_reachable(), name="pg-probe")
            raise error from e

    async def _until_reachable(self) -> None:
        delay = PROBE_INITIAL
        while True:
            await asyncio.sleep(delay)
            try:
                conn = await AsyncConnection.connect(self._url, **CONNECTION_OPTIONS)
            except psycopg.Error:
                delay = min(delay * 2, PROBE_MAX)
                continue
            await conn.close()
            # Drop the pool's connections that died with the server; any left are found broken
            # at their next use, and replaced.
            with contextlib.suppress(Exception):
                await self.pool.check()
            self._probe = None
            log.info("storage.reachable_again", database=redacted(self._url))
            return

    async def fetchone(self, query: str, params: Params = ()) -> tuple[Any, ...] | None:
        rows = await self.fetchall(query, params)
        return rows[0] if rows else None

    async def fetchall(self, query: str, params: Params = ()) -> list[tuple[Any, ...]]:
        async with self.connection() as conn:
            cursor = await conn.execute(dialect(query), params)
            return await cursor.fetchall()

    async def write(self, query: str, params: Params = ()) -> int:
        """Run one write statement; return its row count once committed."""
        async with self.connection() as conn:
            cursor = await conn.execute(dialect(query), params)
            return cursor.rowcount

    async def write_many(self, query: str, rows: Iterable[Params]) -> int:
        """Run one statement over many rows in one transaction; return the rows changed."""
        return (await self.transaction([(query, rows)]))[0]

    async def transaction(self, statements: Sequence[Statement]) -> list[int]:
        """Run statements, each over its rows, in one transaction; each one's row count."""
        counts = []
        async with self.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            for query, rows in statements:
                # One pipeline of statements: a round trip for all the rows, not one for each.
                await cursor.executemany(dialect(query), rows)
                counts.append(max(cursor.rowcount, 0))
        return counts

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
            self._probe = None
        await self.pool.close()


def _said(error: psycopg.Error, settings: StorageSettings) -> str:
    """What PostgreSQL or libpq said, on one line, never with the URL's password in it."""
    said = " ".join(str(error).split()).rstrip(".") or type(error).__name__
    password = urlsplit(settings.database).password
    return said.replace(password, "***") if password else said
