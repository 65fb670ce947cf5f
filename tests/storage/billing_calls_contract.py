"""What every backend's BillingCalls must do; a backend's test module subclasses this with a
`storage` fixture. Only the protocol is spoken here."""

from __future__ import annotations

import asyncio

from gateway.storage.protocols import Storage
from gateway.storage.types import CallCount

DAY1, DAY2, DAY3 = "2026-03-01", "2026-03-02", "2026-03-03"


def count(
    app: str = "a",
    day: str = DAY1,
    kind: str = "task_run",
    processor: str | None = "core",
    calls: int = 1,
    saved: int = 0,
) -> CallCount:
    return CallCount(app, day, kind, processor, calls, saved)


class BillingCallsContract:
    async def test_nothing_counted_reads_as_no_rows(self, storage: Storage) -> None:
        assert await storage.billing_calls.counts(DAY1, DAY3) == []

    async def test_counts_add_up_row_by_row(self, storage: Storage) -> None:
        billing = storage.billing_calls
        await billing.add([count(calls=2), count(kind="search", processor=None, calls=1)])
        search = count(kind="search", processor=None, calls=0, saved=1)
        await billing.add([count(calls=3, saved=4), search])
        assert await billing.counts(DAY1, DAY1) == [
            count(kind="search", processor=None, calls=1, saved=1),
            count(calls=5, saved=4),
        ]

    async def test_each_key_part_keeps_its_own_row(self, storage: Storage) -> None:
        rows = [
            count(),
            count(app="b"),
            count(day=DAY2),
            count(kind="group_run"),
            count(processor="core-fast"),
            count(processor=None),
        ]
        await storage.billing_calls.add(list(reversed(rows)))
        found = await storage.billing_calls.counts(DAY1, DAY3)
        assert sorted(found, key=repr) == sorted(rows, key=repr)
        assert [(c.day, c.app) for c in found] == sorted((c.day, c.app) for c in found)

    async def test_days_and_app_select_rows(self, storage: Storage) -> None:
        await storage.billing_calls.add(
            [count(day=DAY1), count(day=DAY2, app="b"), count(day=DAY3, calls=7)]
        )
        assert await storage.billing_calls.counts(DAY2, DAY3) == [
            count(day=DAY2, app="b"),
            count(day=DAY3, calls=7),
        ]
        assert await storage.billing_calls.counts(DAY1, DAY3, app="a") == [
            count(day=DAY1),
            count(day=DAY3, calls=7),
        ]
        assert await storage.billing_calls.counts(DAY1, DAY3, app="nobody") == []

    async def test_zero_counts_make_no_row(self, storage: Storage) -> None:
        await storage.billing_calls.add([count(calls=0, saved=0)])
        await storage.billing_calls.add([])
        assert await storage.billing_calls.counts(DAY1, DAY3) == []

    async def test_concurrent_batches_lose_nothing(self, storage: Storage) -> None:
        """Writers adding to the same rows at once (replicas flushing) all count."""
        keys = [count(app=app, processor=p) for app in ("a", "b") for p in ("lite", "pro")]
        batches = [list(keys) if n % 2 else list(reversed(keys)) for n in range(8)]
        await asyncio.gather(*(storage.billing_calls.add(batch) for batch in batches))
        found = await storage.billing_calls.counts(DAY1, DAY1)
        assert {(c.app, c.processor): c.calls for c in found} == {
            ("a", "lite"): 8,
            ("a", "pro"): 8,
            ("b", "lite"): 8,
            ("b", "pro"): 8,
        }
