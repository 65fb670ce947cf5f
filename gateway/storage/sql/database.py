"""What the shared SQL needs of a backend's connections."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

Params = Sequence[Any]
Statement = tuple[str, Iterable[Params]]


class SqlDatabase(Protocol):
    """A database taking SQL with ? placeholders; failures raised as StoreError."""

    async def fetchone(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        """The first row of a query, None if there is none."""

    async def fetchall(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """Every row of a query."""

    async def write(self, sql: str, params: Params = ()) -> int:
        """Run one write statement; its row count, once committed."""

    async def write_many(self, sql: str, rows: Iterable[Params]) -> int:
        """One statement over many rows, in one transaction; the rows changed."""

    async def transaction(self, statements: Sequence[Statement]) -> list[int]:
        """Statements, each over its rows, in one transaction; each one's row count."""
