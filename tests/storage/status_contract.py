"""What every backend's StorageStatus must do; a backend's test module subclasses this with a
`storage` fixture and an `unwritable_storage` one (a store whose writes its medium refuses).
Only the protocols are spoken here."""

from __future__ import annotations

import pytest

from gateway.storage.protocols import Storage
from gateway.storage.types import StoredInput, StoreError

T0 = "2026-01-02T03:00:00.000000Z"


class StorageStatusContract:
    async def test_a_new_store_is_at_the_latest_schema_and_takes_writes(
        self, storage: Storage
    ) -> None:
        assert await storage.status.missing_migrations() == []
        await storage.status.check_writable()

    async def test_a_store_that_refuses_writes_says_read_only(
        self, unwritable_storage: Storage
    ) -> None:
        with pytest.raises(StoreError) as checked:
            await unwritable_storage.status.check_writable()
        with pytest.raises(StoreError) as put:
            await unwritable_storage.run_inputs.put(StoredInput("trun_1", b"{}", T0))
        assert (checked.value.kind, put.value.kind) == ("read-only", "read-only")
        # Reads still work.
        assert await unwritable_storage.run_inputs.get("trun_1") is None
        assert await unwritable_storage.status.missing_migrations() == []
