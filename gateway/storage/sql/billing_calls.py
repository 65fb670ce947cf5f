"""Billing calls: additive upserts of per-app, per-day call counts, and reading them back."""

from __future__ import annotations

from collections.abc import Sequence

from ..types import CallCount
from .database import SqlDatabase

# "No processor" is stored as '' (a primary key column cannot be NULL), and read back as None.
NO_PROCESSOR = ""
ADD = (
    "INSERT INTO billing_calls (app, day, kind, processor, calls, saved_calls)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (app, day, kind, processor) DO UPDATE"
    " SET calls = billing_calls.calls + excluded.calls,"
    " saved_calls = billing_calls.saved_calls + excluded.saved_calls"
)


def key_order(count: CallCount) -> tuple[str, str, str, str]:
    """Rows are locked in this order by every writer, so two replicas never deadlock."""
    return (count.app, count.day, count.kind, count.processor or NO_PROCESSOR)


class SqlBillingCalls:
    """BillingCalls over one database."""

    def __init__(self, database: SqlDatabase) -> None:
        self.database = database

    async def add(self, counts: Sequence[CallCount]) -> None:
        ordered = sorted((c for c in counts if c.calls or c.saved_calls), key=key_order)
        rows = [(*key_order(c), c.calls, c.saved_calls) for c in ordered]
        if rows:
            await self.database.write_many(ADD, rows)

    async def counts(self, since: str, until: str, app: str | None = None) -> list[CallCount]:
        sql = (
            "SELECT app, day, kind, processor, calls, saved_calls FROM billing_calls"
            " WHERE day >= ? AND day <= ?"
        )
        params: tuple[str, ...] = (since, until)
        if app is not None:
            sql += " AND app = ?"
            params += (app,)
        rows = await self.database.fetchall(sql + " ORDER BY day, app, kind, processor", params)
        return [
            CallCount(app, day, kind, processor or None, calls, saved)
            for app, day, kind, processor, calls, saved in rows
        ]
