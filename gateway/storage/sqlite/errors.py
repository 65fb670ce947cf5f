"""SQLite's errors as the StoreError kinds every backend reports."""

from __future__ import annotations

import sqlite3

from ..types import StoreError

# SQLite's primary result codes (https://www.sqlite.org/rescode.html), by the kind reported.
FAULT_KINDS = {
    sqlite3.SQLITE_READONLY: "read-only",
    sqlite3.SQLITE_PERM: "read-only",
    sqlite3.SQLITE_FULL: "disk-full",
    sqlite3.SQLITE_IOERR: "io",
    sqlite3.SQLITE_CORRUPT: "corrupt",
    sqlite3.SQLITE_NOTADB: "corrupt",
    sqlite3.SQLITE_BUSY: "busy",
    sqlite3.SQLITE_LOCKED: "busy",
    sqlite3.SQLITE_CANTOPEN: "cannot-open",
}


def fault_kind(error: BaseException) -> str:
    """What kind of storage fault `error` is, from its SQLite result code ("other" if none)."""
    code = getattr(error, "sqlite_errorcode", None)
    return FAULT_KINDS.get(code & 0xFF, "other") if isinstance(code, int) else "other"


def store_error(error: sqlite3.Error) -> StoreError:
    """`error` as the StoreError domain code sees, its kind from its result code."""
    converted = StoreError(fault_kind(error), str(error))
    converted.__cause__ = error
    return converted


def is_busy(error: BaseException) -> bool:
    """Whether a write failed because another connection held the lock past its wait."""
    return isinstance(error, sqlite3.OperationalError) and fault_kind(error) == "busy"
