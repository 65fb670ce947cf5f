"""Storage fault kinds and the store's health, as decisions with no server: SQLite's result
codes in, a kind, a writable flag and log lines out."""

from __future__ import annotations

import sqlite3

import pytest

from gateway.metrics import Metrics
from gateway.storage_health import StorageHealth
from gateway.store import StoreError, fault_kind
from tests.conftest import capture_logs
from tests.test_ops import sample


def sqlite_error(code: int, message: str = "x") -> sqlite3.Error:
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code
    return error


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (sqlite3.SQLITE_READONLY, "read-only"),
        (sqlite3.SQLITE_READONLY_DBMOVED, "read-only"),  # extended codes keep their primary
        (sqlite3.SQLITE_PERM, "read-only"),
        (sqlite3.SQLITE_FULL, "disk-full"),
        (sqlite3.SQLITE_IOERR, "io"),
        (sqlite3.SQLITE_IOERR_SHMSIZE, "io"),
        (sqlite3.SQLITE_CORRUPT, "corrupt"),
        (sqlite3.SQLITE_NOTADB, "corrupt"),
        (sqlite3.SQLITE_BUSY, "busy"),
        (sqlite3.SQLITE_LOCKED, "busy"),
        (sqlite3.SQLITE_CANTOPEN, "cannot-open"),
        (sqlite3.SQLITE_CONSTRAINT, "other"),
    ],
)
def test_sqlite_result_codes_name_a_kind(code: int, kind: str) -> None:
    assert fault_kind(sqlite_error(code)) == kind


def test_an_error_without_a_result_code_is_other() -> None:
    assert fault_kind(sqlite3.ProgrammingError("closed")) == "other"
    assert fault_kind(TimeoutError()) == "other"


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
