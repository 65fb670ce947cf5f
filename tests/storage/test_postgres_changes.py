"""Replicas hear of changes as they commit: LISTEN/NOTIFY from triggers, a listener that
survives its connection being killed, and purge numbers that become visible in order."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import psycopg
import pytest

from gateway.storage.postgres.listener import ChangeListener
from gateway.storage.protocols import Storage
from gateway.storage.types import EVERYTHING, NewKey

AT = "2026-01-02T03:04:05.000000Z"


@pytest.fixture
def storage(postgres_storage: Storage) -> Storage:
    return postgres_storage


@pytest.fixture
async def heard(postgres_url: str, storage: Storage) -> AsyncIterator[asyncio.Queue[str]]:
    """What a listener on the test's database hears, in order, starting with its connect."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    listener = ChangeListener(postgres_url, queue.put_nowait, backoff_initial=0.01)
    task = asyncio.create_task(listener.run())
    assert await next_heard(queue) == EVERYTHING
    yield queue
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def next_heard(queue: asyncio.Queue[str]) -> str:
    return await asyncio.wait_for(queue.get(), 10)


def key(name: str) -> NewKey:
    return NewKey(name, f"hash-{name}", "pgw_abc", AT)


async def test_key_changes_purges_and_grants_are_heard_as_they_commit(
    storage: Storage, heard: asyncio.Queue[str]
) -> None:
    await storage.app_keys.create(key("billing"))
    assert await next_heard(heard) == "app_keys"
    await storage.app_keys.revoke("billing", AT)
    assert await next_heard(heard) == "app_keys"
    await storage.purges.purge(["trun_1"])
    assert await next_heard(heard) == "cache_purges"
    await storage.run_access.grant("trun_1", "billing", AT)
    assert await next_heard(heard) == "run_access"


async def test_last_used_times_are_not_announced(
    storage: Storage, heard: asyncio.Queue[str]
) -> None:
    await storage.app_keys.create(key("billing"))
    assert await next_heard(heard) == "app_keys"
    await storage.app_keys.record_last_used({"billing"}, AT)
    await storage.purges.purge(None)  # a change that is announced, to see what came before it
    assert await next_heard(heard) == "cache_purges"
    assert heard.empty()


async def test_a_killed_listener_connection_reconnects_and_rereads_everything(
    postgres_url: str, storage: Storage, heard: asyncio.Queue[str]
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'parallel-gateway listener'"
            " AND datname = current_database()"
        ).fetchall()
        assert killed == [(True,)]
        # Committed while the listener was deaf: covered by the "*" after it reconnects.
        admin.execute(
            "INSERT INTO run_access (id, app, how, at) VALUES ('trun_9', 'a', 'granted', %s)",
            (AT,),
        )
    assert await next_heard(heard) == EVERYTHING
    await storage.app_keys.create(key("after"))
    assert await next_heard(heard) == "app_keys"


async def test_purge_numbers_become_visible_in_order(postgres_url: str, storage: Storage) -> None:
    async with await psycopg.AsyncConnection.connect(postgres_url) as first:
        await first.execute(
            "INSERT INTO cache_purges (run_ids, purged_at) VALUES (NULL, %s)", (AT,)
        )
        # A second purge, from another session, waits for the first to commit before it draws
        # its number: a reader can never see number 2 while number 1 is still to come.
        second = asyncio.create_task(storage.purges.purge(["trun_2"]))
        async with await psycopg.AsyncConnection.connect(postgres_url) as watcher:
            while not await waiting_for_advisory_lock(watcher):
                assert not second.done()
                await asyncio.sleep(0.01)
        assert await storage.purges.purges_since(0) == []
        await first.commit()
    await second
    assert [p.seq for p in await storage.purges.purges_since(0)] == [1, 2]
    assert [p.run_ids for p in await storage.purges.purges_since(1)] == [["trun_2"]]


async def waiting_for_advisory_lock(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> bool:
    cursor = await conn.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    )
    row = await cursor.fetchone()
    await conn.commit()
    return row == (1,)
