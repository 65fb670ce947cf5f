"""App keys: the `app_keys` table, and `retired_keys` for keys rotation replaced."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from ..types import KEEP, AppKey, Deleted, KeyChanges, KeyState, NewKey, ReplayMode
from .database import SqlDatabase, Statement

COLUMNS = (
    "name, prefix, created_at, last_used_at, revoked_at, allow, rate, burst, expires_at, max_open,"
    " replay, budget_usd, budget_per"
)
# The columns KeyChanges may set besides `allow`, by its fields' names: never a caller's text.
PLAIN_COLUMNS = ("rate", "burst", "expires_at", "max_open", "budget_usd", "budget_per")


class SqlAppKeys:
    """AppKeys over one database."""

    def __init__(self, database: SqlDatabase) -> None:
        self.database = database

    async def create(self, key: NewKey) -> bool:
        created = await self.database.write(
            "INSERT INTO app_keys (name, key_hash, prefix, created_at, allow, rate, burst,"
            " expires_at, max_open, replay, budget_usd, budget_per)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (name) DO NOTHING",
            (
                key.name,
                key.key_hash,
                key.prefix,
                key.created_at,
                _allow_column(key.allow),
                key.rate,
                key.burst,
                key.expires_at,
                key.max_open,
                key.replay.value,
                key.budget_usd,
                key.budget_per,
            ),
        )
        return created == 1

    async def get(self, name: str) -> AppKey | None:
        row = await self.database.fetchone(
            f"SELECT {COLUMNS} FROM app_keys WHERE name = ?",  # noqa: S608
            (name,),
        )
        return None if row is None else _app_key(row)

    async def list_apps(self) -> list[AppKey]:
        rows = await self.database.fetchall(
            f"SELECT {COLUMNS} FROM app_keys ORDER BY name"  # noqa: S608
        )
        return [_app_key(row) for row in rows]

    async def update(self, name: str, changes: KeyChanges) -> None:
        values: dict[str, object] = {}
        if changes.allow is not KEEP:
            values["allow"] = _allow_column(changes.allow)
        for column in PLAIN_COLUMNS:
            if (value := getattr(changes, column)) is not KEEP:
                values[column] = value
        if changes.replay is not KEEP:
            values["replay"] = changes.replay.value
        if not values:
            return
        assignments = ", ".join(f"{column} = ?" for column in values)
        await self.database.write(
            f"UPDATE app_keys SET {assignments} WHERE name = ?",  # noqa: S608
            (*values.values(), name),
        )

    async def rotate(
        self, name: str, key_hash: str, prefix: str, at: str, old_retires_at: str
    ) -> None:
        statements: list[Statement] = [
            (
                "INSERT INTO retired_keys (key_hash, app, prefix, created_at, retires_at)"
                " SELECT key_hash, name, prefix, created_at, ? FROM app_keys WHERE name = ?",
                [(old_retires_at, name)],
            ),
            # Keys revoked in their grace period must not come back with a revoked app.
            (
                "UPDATE retired_keys SET retires_at = ? WHERE app = ? AND retires_at > ?"
                " AND (SELECT revoked_at FROM app_keys WHERE name = ?) IS NOT NULL",
                [(at, name, at, name)],
            ),
            (
                "UPDATE app_keys SET key_hash = ?, prefix = ?, created_at = ?, revoked_at = NULL"
                " WHERE name = ?",
                [(key_hash, prefix, at, name)],
            ),
        ]
        await self.database.transaction(statements)

    async def revoke(self, name: str, at: str) -> bool:
        revoked = await self.database.write(
            "UPDATE app_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (at, name)
        )
        return revoked == 1

    async def delete_revoked(self, name: str) -> Deleted:
        # Only a revoked app's records go: its app_keys row, deleted last, still says so.
        runs, retired, current = await self.database.transaction(
            [
                (
                    "DELETE FROM run_access WHERE app = ? AND EXISTS"
                    " (SELECT 1 FROM app_keys WHERE name = ? AND revoked_at IS NOT NULL)",
                    [(name, name)],
                ),
                (
                    "DELETE FROM retired_keys WHERE app = ? AND EXISTS"
                    " (SELECT 1 FROM app_keys WHERE name = ? AND revoked_at IS NOT NULL)",
                    [(name, name)],
                ),
                ("DELETE FROM app_keys WHERE name = ? AND revoked_at IS NOT NULL", [(name,)]),
            ]
        )
        return Deleted(retired + current, runs)

    async def key_states(self) -> dict[str, KeyState]:
        rows = await self.database.fetchall(
            "SELECT key_hash, name, revoked_at, expires_at, NULL FROM app_keys"
            " UNION ALL SELECT r.key_hash, a.name, a.revoked_at, a.expires_at, r.retires_at"
            " FROM retired_keys r JOIN app_keys a ON a.name = r.app"
        )
        return {
            row[0]: KeyState(row[1], row[2] is not None, _seconds(row[3]), _seconds(row[4]))
            for row in rows
        }

    async def record_last_used(self, names: set[str], at: str) -> None:
        await self.database.write_many(
            "UPDATE app_keys SET last_used_at = ? WHERE name = ?", [(at, name) for name in names]
        )


def _app_key(row: tuple[Any, ...]) -> AppKey:
    allow = None if row[5] is None else list(orjson.loads(row[5]))
    rate, burst, expires_at, max_open, replay, budget_usd, budget_per = row[6:]
    return AppKey(
        row[0], row[1], row[2], row[3], row[4], allow, rate, burst, expires_at, max_open,
        ReplayMode(replay), budget_usd, budget_per,
    )  # fmt: skip


def _allow_column(allow: list[str] | None) -> str | None:
    """The allowlist as stored: a JSON array of rules; None for every route."""
    return None if allow is None else orjson.dumps(allow).decode()


def _seconds(at: str | None) -> float | None:
    return None if at is None else datetime.fromisoformat(at).timestamp()
