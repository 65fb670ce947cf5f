"""The store's health, as decisions with no server: faults by kind in, a writable flag and
log lines out (SQLite's result codes are named kinds in tests/storage/test_sqlite_errors.py)."""

from __future__ import annotations

import pytest

from gateway.ops.metrics import Metrics
from gateway.storage.health import StorageHealth
from gateway.storage.types import StoreError
from tests.conftest import capture_logs
from tests.ops.test_ops import sample


def test_a_failed_write_makes_the_store_unwritable_until_a_write_succeeds() -> None:
    metrics = Metrics()
    health = StorageHealth("gw.db", metrics)
    with capture_logs() as logs:
        health.failed(StoreError("disk-full", "database or disk is full"), "write")
        writable_after_failure = health.writable
        gauge_after_failure = sample(metrics.exposition().decode(), "gateway_storage_writable")
        health.wrote()

    assert (writable_after_failure, gauge_after_failure) == (False, 0.0)
    assert health.writable is True
    assert sample(metrics.exposition().decode(), "gateway_storage_writable") == 1.0
    assert [line["event"] for line in logs] == ["storage.error", "storage.writable"]
    assert health.report()["errors"] == {"disk-full": 1}


@pytest.mark.parametrize(
    ("error", "operation"),
    [
        (StoreError("corrupt", "database disk image is malformed"), "read"),
        (StoreError("busy", "database is locked"), "write"),
    ],
    ids=["a-read", "a-busy-lock"],
)
def test_a_read_fault_or_a_busy_lock_leaves_the_store_writable(
    error: StoreError, operation: str
) -> None:
    health = StorageHealth("gw.db")
    health.failed(error, operation)
    assert health.writable is True
    assert health.report()["errors"] == {error.kind: 1}
