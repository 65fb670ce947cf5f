"""What every backend's RunInputs and Purges must do; a backend's test module subclasses these
with a `storage` fixture. Only the protocols are spoken here."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.storage.protocols import Storage
from gateway.storage.types import CacheStats, Purge, StoredInput

AT = "2026-01-02T03:04:05.000006Z"
LATER = "2026-01-02T03:04:06.000000Z"


def entry(
    run_id: str, body: bytes = b'{"processor":"core","input":"x"}', at: str = AT
) -> StoredInput:
    return StoredInput(run_id, body, at)


async def stored(storage: Storage) -> list[StoredInput]:
    return [e async for e in storage.run_inputs.scan()]


class RunInputsContract:
    async def test_an_unknown_run_is_none(self, storage: Storage) -> None:
        assert await storage.run_inputs.get("trun_none") is None

    async def test_a_body_comes_back_byte_for_byte(self, storage: Storage) -> None:
        # Odd spacing, key order, unicode, escapes and a NUL: nothing is parsed or normalised.
        body = '{ "input" : "Ünïcode ☃\\u0000",\n "processor":"base", "x":1}'.encode() + b"\0\xff"
        await storage.run_inputs.put(entry("trun_bytes", body))
        assert await storage.run_inputs.get("trun_bytes") == entry("trun_bytes", body)

    async def test_the_first_copy_stays_a_second_put_changes_nothing(
        self, storage: Storage
    ) -> None:
        await storage.run_inputs.put(entry("trun_once", b'{"a":1}', AT))
        await storage.run_inputs.put(entry("trun_once", b'{"a":2}', LATER))
        assert await storage.run_inputs.get("trun_once") == entry("trun_once", b'{"a":1}', AT)

    async def test_put_many_counts_only_the_new_entries(self, storage: Storage) -> None:
        await storage.run_inputs.put(entry("trun_b", b"old"))
        new = await storage.run_inputs.put_many(
            [entry("trun_a", b"a"), entry("trun_b", b"new"), entry("trun_c", b"c")]
        )
        assert new == 2
        assert [(e.run_id, e.body) for e in await stored(storage)] == [
            ("trun_a", b"a"),
            ("trun_b", b"old"),
            ("trun_c", b"c"),
        ]

    async def test_put_many_from_a_failing_source_stores_none_of_it(self, storage: Storage) -> None:
        def broken() -> Iterator[StoredInput]:
            yield entry("trun_first")
            raise ValueError("the source failed mid-stream")

        with pytest.raises(ValueError, match="mid-stream"):
            await storage.run_inputs.put_many(broken())
        assert await stored(storage) == []

    async def test_scan_is_in_run_id_order_across_pages(self, storage: Storage) -> None:
        run_ids = [f"trun_{n:05d}" for n in range(2500)]
        assert await storage.run_inputs.put_many([entry(r) for r in reversed(run_ids)]) == 2500
        assert [e.run_id for e in await stored(storage)] == run_ids

    async def test_scan_of_named_runs_skips_the_missing_and_repeats(self, storage: Storage) -> None:
        await storage.run_inputs.put_many([entry("trun_a"), entry("trun_b"), entry("trun_c")])
        named = storage.run_inputs.scan(["trun_c", "trun_x", "trun_a", "trun_c"])
        assert [e.run_id async for e in named] == ["trun_a", "trun_c"]

    async def test_stats_count_entries_bytes_and_the_oldest_and_newest(
        self, storage: Storage
    ) -> None:
        assert await storage.run_inputs.stats() == CacheStats(0, 0, None, None)
        await storage.run_inputs.put_many(
            [entry("trun_a", b"12345", LATER), entry("trun_b", b"123", AT)]
        )
        assert await storage.run_inputs.stats() == CacheStats(2, 8, AT, LATER)


class PurgesContract:
    async def test_nothing_purged_yet(self, storage: Storage) -> None:
        assert await storage.purges.last_purge() == 0
        assert await storage.purges.purges_since(0) == []

    async def test_purges_by_id_and_of_all_are_recorded_in_order(self, storage: Storage) -> None:
        await storage.run_inputs.put_many([entry(f"trun_{n}") for n in range(4)])

        removed = await storage.purges.purge(["trun_0", "trun_2", "trun_missing"])
        first = await storage.purges.last_purge()
        assert removed == 2
        assert [e.run_id for e in await stored(storage)] == ["trun_1", "trun_3"]

        assert await storage.purges.purge(None) == 2
        second = await storage.purges.last_purge()
        assert await stored(storage) == []

        assert 0 < first < second
        assert await storage.purges.purges_since(0) == [
            Purge(first, ["trun_0", "trun_2", "trun_missing"]),
            Purge(second, None),
        ]
        assert await storage.purges.purges_since(first) == [Purge(second, None)]
        assert await storage.purges.purges_since(second) == []

    async def test_a_purge_that_removes_nothing_is_still_recorded(self, storage: Storage) -> None:
        assert await storage.purges.purge(["trun_never"]) == 0
        assert await storage.purges.purges_since(0) == [
            Purge(await storage.purges.last_purge(), ["trun_never"])
        ]
