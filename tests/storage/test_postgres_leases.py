"""One upstream fetch per cold run across replicas: fetch leases in PostgreSQL, and ColdRuns
deciding who fetches, who waits, and who takes over from a replica that died."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.cache.cold_runs import LEASE, ColdRuns, Held
from gateway.config import StorageSettings
from gateway.storage.postgres import open_postgres
from gateway.storage.protocols import FetchLeases, Storage
from gateway.storage.types import StoredInput

AT = "2026-01-02T03:04:05.000000Z"
RUN = "trun_cold"


@pytest.fixture
def storage(postgres_storage: Storage) -> Storage:
    return postgres_storage


def leases_of(storage: Storage) -> FetchLeases:
    assert storage.fetch_leases is not None
    return storage.fetch_leases


async def test_a_lease_is_held_by_one_owner_until_it_runs_out(storage: Storage) -> None:
    leases = leases_of(storage)
    assert await leases.take(RUN, "a", 100.0, 105.0) is True
    assert await leases.take(RUN, "b", 101.0, 106.0) is False
    assert await leases.renew(RUN, "b", 110.0) is False
    assert await leases.renew(RUN, "a", 108.0) is True
    assert await leases.take(RUN, "b", 107.0, 112.0) is False  # renewed past 107
    assert await leases.take(RUN, "b", 108.5, 113.0) is True  # a stopped renewing: taken over
    assert await leases.renew(RUN, "a", 120.0) is False


async def test_a_released_lease_is_free_and_only_its_owner_releases_it(storage: Storage) -> None:
    leases = leases_of(storage)
    assert await leases.take(RUN, "a", 100.0, 105.0) is True
    await leases.release(RUN, "b")
    assert await leases.take(RUN, "b", 100.0, 105.0) is False
    await leases.release(RUN, "a")
    assert await leases.take(RUN, "b", 100.0, 105.0) is True


async def test_one_replica_fetches_and_the_others_wait_for_its_entry(storage: Storage) -> None:
    replicas = [ColdRuns(leases_of(storage), storage.run_inputs, f"r{i}") for i in range(3)]
    first = await replicas[0].claim(RUN)
    assert isinstance(first, Held)
    waiting = [asyncio.create_task(r.claim(RUN)) for r in replicas[1:]]
    await asyncio.sleep(0.05)
    assert not any(task.done() for task in waiting)
    entry = StoredInput(RUN, b'{"input":"x"}', AT)
    await storage.run_inputs.put(entry)
    await first.release()
    assert await asyncio.gather(*waiting) == [entry, entry]


async def test_a_failed_fetch_lets_the_next_replica_fetch(storage: Storage) -> None:
    a, b = (ColdRuns(leases_of(storage), storage.run_inputs, name) for name in "ab")
    held = await a.claim(RUN)
    assert isinstance(held, Held)
    waiting = asyncio.create_task(b.claim(RUN))
    await held.release()  # an error from upstream: nothing stored, the lease let go
    took_over = await waiting
    assert isinstance(took_over, Held)
    assert took_over.owner == "b"
    await took_over.release()


async def test_a_dead_holder_is_taken_over_once_its_lease_runs_out(storage: Storage) -> None:
    dead = ColdRuns(leases_of(storage), storage.run_inputs, "dead")
    held = await dead.claim(RUN)
    assert isinstance(held, Held)
    await held.stop_renewing()  # killed: it neither renews nor releases
    later = ColdRuns(
        leases_of(storage), storage.run_inputs, "alive", clock=lambda: time.time() + LEASE + 1
    )
    took_over = await later.claim(RUN)
    assert isinstance(took_over, Held)
    assert took_over.owner == "alive"
    await took_over.release()


async def test_a_run_stored_just_before_the_take_is_not_fetched_again(storage: Storage) -> None:
    entry = StoredInput(RUN, b'{"input":"y"}', AT)
    await storage.run_inputs.put(entry)
    claimed = await ColdRuns(leases_of(storage), storage.run_inputs, "a").claim(RUN)
    assert claimed == entry
    # No lease is taken on a stored run: there is nothing to fetch.
    assert await leases_of(storage).take(RUN, "b", time.time(), time.time() + 1) is False


async def test_a_failing_store_means_fetching_without_a_lease(postgres_url: str) -> None:
    storage = await open_postgres(StorageSettings(database=postgres_url))
    await storage.close()  # every call now fails
    assert await ColdRuns(leases_of(storage), storage.run_inputs, "a").claim(RUN) is None
