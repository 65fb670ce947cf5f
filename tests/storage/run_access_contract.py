"""What every backend's RunAccess must do; a backend's test module subclasses this with a
`storage` fixture. Only the protocol is spoken here."""

from __future__ import annotations

from gateway.storage.protocols import Storage
from gateway.storage.types import Access

T0 = "2026-01-02T03:00:00.000000Z"
T1 = "2026-01-02T04:00:00.000000Z"


class RunAccessContract:
    async def test_an_app_reads_what_it_created_and_nothing_else(self, storage: Storage) -> None:
        access = storage.run_access
        await access.record_created("a", ["trun_1", "tgrp_1"], T0)

        assert await access.may_read("a", ["trun_1", "tgrp_1"]) is True
        assert await access.may_read("a", []) is True
        assert await access.may_read("a", ["trun_1", "trun_2"]) is False
        assert await access.may_read("b", ["trun_1"]) is False

    async def test_a_second_record_keeps_the_first(self, storage: Storage) -> None:
        await storage.run_access.record_created("a", ["trun_1"], T0)
        await storage.run_access.record_created("a", ["trun_1"], T1)
        assert await storage.run_access.list_records() == [Access("trun_1", "a", "created", T0)]

    async def test_a_grant_is_made_once(self, storage: Storage) -> None:
        access = storage.run_access
        await access.record_created("a", ["trun_1"], T0)

        assert await access.grant("trun_1", "b", T1) is True
        assert await access.grant("trun_1", "b", T1) is False
        assert await access.grant("trun_1", "a", T1) is False  # its creator could already

        assert await access.may_read("b", ["trun_1"]) is True

    async def test_records_are_listed_by_app_then_time_then_id(self, storage: Storage) -> None:
        access = storage.run_access
        await access.record_created("b", ["trun_z", "trun_y"], T1)
        await access.grant("trun_x", "b", T0)
        await access.record_created("a", ["trun_w"], T1)

        assert await access.list_records() == [
            Access("trun_w", "a", "created", T1),
            Access("trun_x", "b", "granted", T0),
            Access("trun_y", "b", "created", T1),
            Access("trun_z", "b", "created", T1),
        ]
        assert await access.list_records("a") == [Access("trun_w", "a", "created", T1)]
        assert await access.list_records("nobody") == []

    async def test_revoking_says_which_record_went(self, storage: Storage) -> None:
        access = storage.run_access
        await access.record_created("a", ["trun_1"], T0)
        await access.grant("trun_1", "b", T0)

        assert await access.revoke("trun_1", "b") == "granted"
        assert await access.revoke("trun_1", "a") == "created"
        assert await access.revoke("trun_1", "a") is None
        assert await access.list_records() == []
