"""Replicas share their admitted and open calls per app through PostgreSQL."""

from __future__ import annotations

import pytest

from gateway.storage.protocols import ReplicaUsage, Storage
from gateway.storage.types import Usage


@pytest.fixture
def storage(postgres_storage: Storage) -> Storage:
    return postgres_storage


def usage_of(storage: Storage) -> ReplicaUsage:
    assert storage.replica_usage is not None
    return storage.replica_usage


async def test_each_replica_reads_the_others_latest_figures(storage: Storage) -> None:
    usage = usage_of(storage)
    assert await usage.exchange("a", [Usage("a", "billing", 5, 1)], 100.0, 99.0) == []
    b_sees = await usage.exchange("b", [Usage("b", "billing", 2, 0)], 100.1, 99.1)
    assert b_sees == [Usage("a", "billing", 5, 1)]
    a_sees = await usage.exchange(
        "a", [Usage("a", "billing", 9, 3), Usage("a", "search", 1, 0)], 100.2, 99.2
    )
    assert a_sees == [Usage("b", "billing", 2, 0)]
    assert await usage.exchange("b", [], 100.3, 99.3) == [
        Usage("a", "billing", 9, 3),
        Usage("a", "search", 1, 0),
    ]


async def test_a_replica_not_heard_from_recently_is_left_out(storage: Storage) -> None:
    usage = usage_of(storage)
    await usage.exchange("gone", [Usage("gone", "billing", 50, 4)], 100.0, 0.0)
    await usage.exchange("live", [Usage("live", "billing", 1, 1)], 110.0, 0.0)
    assert await usage.exchange("me", [], 110.5, 105.5) == [Usage("live", "billing", 1, 1)]


async def test_a_replica_that_leaves_takes_its_figures_with_it(storage: Storage) -> None:
    usage = usage_of(storage)
    await usage.exchange("a", [Usage("a", "billing", 5, 2)], 100.0, 0.0)
    await usage.leave("a")
    assert await usage.exchange("b", [], 100.1, 0.0) == []


async def test_a_row_says_when_its_counting_began_as_last_published(storage: Storage) -> None:
    """A capped app's row is published from the replica's start; once a limit is loaded,
    its counting begins later, and readers see the later time."""
    usage = usage_of(storage)
    await usage.exchange("a", [Usage("a", "billing", 0, 1, started=100.0)], 100.0, 0.0)
    await usage.exchange("a", [Usage("a", "billing", 2, 1, started=105.0)], 106.0, 0.0)
    assert await usage.exchange("b", [], 106.1, 0.0) == [Usage("a", "billing", 2, 1, 105.0)]
