"""PostgreSQL going away and coming back: calls fail at once while it is gone (none waits out
the pool's timeout), and the backend reconnects by itself when it returns."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from gateway.config import StorageSettings
from gateway.storage.postgres.database import UNREACHABLE, PgDatabase
from gateway.storage.types import StoreError
from tests.postgres_server import PostgresServer


@pytest.fixture
def server() -> Iterator[PostgresServer]:
    """A server of this test's own, to stop and start."""
    own = PostgresServer.create()
    own.start()
    yield own
    own.stop()


async def test_an_outage_fails_calls_at_once_and_ends_by_itself(server: PostgresServer) -> None:
    database = await PgDatabase.open(StorageSettings(database=server.url(), busy_timeout_ms=60_000))
    try:
        assert await database.fetchall("SELECT 1") == [(1,)]
        server.halt()
        with pytest.raises(StoreError) as first:
            await database.fetchall("SELECT 1")
        assert first.value.kind == "cannot-open"
        assert database.reachable is False
        # Were it to wait for a pooled connection, this would take busy_timeout_ms (60 s).
        with pytest.raises(StoreError) as next_call:
            await asyncio.wait_for(database.fetchall("SELECT 1"), 5)
        assert (next_call.value.kind, str(next_call.value)) == ("cannot-open", UNREACHABLE)

        server.start()
        for _ in range(500):
            if database.reachable:
                break
            await asyncio.sleep(0.02)
        assert database.reachable is True
        assert await database.fetchall("SELECT 1") == [(1,)]
    finally:
        await database.close()
