"""App keys: generate, hash, and keep them in the `app_keys` table (hashes only)."""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from .allowlist import AllowError, Rule, parse_rule
from .db import Database
from .store import now_rfc3339

KEY_PREFIX = "pgw_"
DISPLAY_CHARS = 8


class AppKeyError(Exception):
    """A key command that cannot be carried out (duplicate or unknown name)."""


@dataclass(frozen=True, slots=True)
class AppKey:
    name: str
    prefix: str
    created_at: str
    last_used_at: str | None
    revoked_at: str | None
    allow: list[str] | None = None  # route rules; None: every route

    @property
    def status(self) -> str:
        return "revoked" if self.revoked_at else "active"


def generate_key() -> str:
    """`pgw_` and 43 URL-safe characters: 256 bits from `secrets`."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    # A fast hash is enough: keys carry 256 random bits, so there is nothing to brute-force.
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    return key[: len(KEY_PREFIX) + DISPLAY_CHARS]


async def create_key(db: Database, name: str, allow: Sequence[str] | None = None) -> str:
    """Create a key for app `name` and return it; only its hash is stored.

    `allow` limits the key to those route rules ("GET /v1/tasks/runs/*"); None allows all.
    """
    if not name or len(name) > 64 or not name.isprintable():
        raise AppKeyError(f"App name {name!r} is not valid: use 1 to 64 printable characters.")
    try:
        rules = None if allow is None else [parse_rule(text).text for text in allow]
    except AllowError as e:
        raise AppKeyError(str(e)) from None
    key = generate_key()
    try:
        await db.write(
            "INSERT INTO app_keys (name, key_hash, prefix, created_at, allow)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                name,
                hash_key(key),
                display_prefix(key),
                now_rfc3339(),
                None if rules is None else orjson.dumps(rules).decode(),
            ),
        )
    except sqlite3.IntegrityError:
        raise AppKeyError(f"An app named {name!r} already exists.") from None
    return key


async def revoke_key(db: Database, name: str) -> None:
    row = await db.fetchone("SELECT revoked_at FROM app_keys WHERE name = ?", (name,))
    if row is None:
        raise AppKeyError(f"No app named {name!r}.")
    if row[0] is not None:
        raise AppKeyError(f"The key of app {name!r} was already revoked at {row[0]}.")
    await db.write(
        "UPDATE app_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
        (now_rfc3339(), name),
    )


async def list_keys(db: Database) -> list[AppKey]:
    rows = await db.fetchall(
        "SELECT name, prefix, created_at, last_used_at, revoked_at, allow"
        " FROM app_keys ORDER BY name"
    )
    return [AppKey(row[0], row[1], row[2], row[3], row[4], _rules(row[5])) for row in rows]


async def key_owners(db: Database) -> dict[str, tuple[str, bool]]:
    """Map each key's hash to (app name, revoked)."""
    rows = await db.fetchall("SELECT key_hash, name, revoked_at FROM app_keys")
    return {row[0]: (row[1], row[2] is not None) for row in rows}


async def key_rules(db: Database) -> dict[str, tuple[Rule, ...]]:
    """Each app's route rules, for the apps whose keys have any."""
    rows = await db.fetchall("SELECT name, allow FROM app_keys WHERE allow IS NOT NULL")
    return {row[0]: tuple(parse_rule(text) for text in _rules(row[1]) or ()) for row in rows}


def _rules(column: str | None) -> list[str] | None:
    return None if column is None else list(orjson.loads(column))


async def record_last_used(db: Database, names: set[str], at: str) -> None:
    await db.write_many(
        "UPDATE app_keys SET last_used_at = ? WHERE name = ?", [(at, name) for name in names]
    )
