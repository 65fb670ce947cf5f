"""SQLite's errors as StoreError kinds: its result codes in, a kind out."""

from __future__ import annotations

import sqlite3

import pytest

from gateway.storage.sqlite.errors import fault_kind


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
