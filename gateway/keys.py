"""App keys: generate, hash, and keep them in the `app_keys` table (hashes only)."""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson

from .allowlist import AllowError, Rule, parse_rule
from .db import Database
from .ratelimit import Limit
from .store import now_rfc3339, rfc3339

KEY_PREFIX = "pgw_"
DISPLAY_CHARS = 8
DURATION = re.compile(r"([1-9][0-9]{0,5})([smhdw])")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


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
    rate: float | None = None  # requests per second; None: no limit
    burst: int | None = None
    expires_at: str | None = None  # None: never
    max_open: int | None = None  # calls open at once; None: no cap

    def status(self, now: str) -> str:
        if self.revoked_at:
            return "revoked"
        return "expired" if self.expires_at is not None and self.expires_at <= now else "active"


@dataclass(frozen=True, slots=True)
class KeyState:
    """What authentication needs of a key: its app, and whether it still opens anything."""

    name: str
    revoked: bool
    expires: float | None  # POSIX seconds; None: never


def parse_expiry(text: str, now: datetime) -> datetime:
    """`--expires 30d`: a count of s, m, h, d or w from `now`."""
    match = DURATION.fullmatch(text.strip())
    if match is None:
        raise AppKeyError(
            f"Expiry {text!r} is not valid: use a whole number and a unit, such as 90m, 12h, "
            "30d or 8w (s, m, h, d, w)."
        )
    return now + timedelta(seconds=int(match[1]) * UNIT_SECONDS[match[2]])


def parse_limit(rate: float | None, burst: int | None) -> Limit | None:
    """`--rate R --burst B`: both or neither; the burst defaults to the rate, at least 1."""
    if rate is None:
        if burst is not None:
            raise AppKeyError("--burst needs --rate: a burst is the size of a rate's bucket.")
        return None
    if not (0 < rate <= 1_000_000):  # also refuses NaN
        raise AppKeyError(f"Rate {rate!r} is not valid: use requests per second, above 0.")
    if burst is None:
        burst = max(1, int(rate))
    if not 1 <= burst <= 1_000_000:
        raise AppKeyError(f"Burst {burst!r} is not valid: use a whole number from 1.")
    return Limit(rate, burst)


def generate_key() -> str:
    """`pgw_` and 43 URL-safe characters: 256 bits from `secrets`."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    # A fast hash is enough: keys carry 256 random bits, so there is nothing to brute-force.
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    return key[: len(KEY_PREFIX) + DISPLAY_CHARS]


async def create_key(
    db: Database,
    name: str,
    allow: Sequence[str] | None = None,
    limit: Limit | None = None,
    expires_at: datetime | None = None,
    max_open: int | None = None,
) -> str:
    """Create a key for app `name` and return it; only its hash is stored.

    `allow` limits the key to those route rules ("GET /v1/tasks/runs/*"); None allows all.
    `limit` is its rate limit, `expires_at` when it stops working, and `max_open` how many of
    its calls may be open at once; None for none of them.
    """
    if not name or len(name) > 64 or not name.isprintable():
        raise AppKeyError(f"App name {name!r} is not valid: use 1 to 64 printable characters.")
    try:
        rules = None if allow is None else [parse_rule(text).text for text in allow]
    except AllowError as e:
        raise AppKeyError(str(e)) from None
    check_max_open(max_open)
    key = generate_key()
    try:
        await db.write(
            "INSERT INTO app_keys (name, key_hash, prefix, created_at, allow, rate, burst,"
            " expires_at, max_open) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                name,
                hash_key(key),
                display_prefix(key),
                now_rfc3339(),
                None if rules is None else orjson.dumps(rules).decode(),
                None if limit is None else limit.rate,
                None if limit is None else limit.burst,
                None if expires_at is None else rfc3339(expires_at),
                max_open,
            ),
        )
    except sqlite3.IntegrityError:
        raise AppKeyError(f"An app named {name!r} already exists.") from None
    return key


async def set_limit(db: Database, name: str, limit: Limit | None) -> None:
    """Change (or, with None, remove) an app's rate limit."""
    await _existing(db, name)
    await db.write(
        "UPDATE app_keys SET rate = ?, burst = ? WHERE name = ?",
        (None if limit is None else limit.rate, None if limit is None else limit.burst, name),
    )


async def set_expiry(db: Database, name: str, expires_at: datetime | None) -> None:
    """Change (or, with None, remove) when an app's key expires."""
    await _existing(db, name)
    await db.write(
        "UPDATE app_keys SET expires_at = ? WHERE name = ?",
        (None if expires_at is None else rfc3339(expires_at), name),
    )


async def set_max_open(db: Database, name: str, max_open: int | None) -> None:
    """Change (or, with None, remove) how many of an app's calls may be open at once."""
    check_max_open(max_open)
    await _existing(db, name)
    await db.write("UPDATE app_keys SET max_open = ? WHERE name = ?", (max_open, name))


def check_max_open(max_open: int | None) -> None:
    if max_open is not None and max_open < 1:
        raise AppKeyError(f"--max-open must be at least 1, not {max_open}.")


async def _existing(db: Database, name: str) -> tuple[object, ...]:
    row = await db.fetchone("SELECT revoked_at FROM app_keys WHERE name = ?", (name,))
    if row is None:
        raise AppKeyError(f"No app named {name!r}.")
    return tuple(row)


async def revoke_key(db: Database, name: str) -> None:
    row = await _existing(db, name)
    if row[0] is not None:
        raise AppKeyError(f"The key of app {name!r} was already revoked at {row[0]}.")
    await db.write(
        "UPDATE app_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
        (now_rfc3339(), name),
    )


async def list_keys(db: Database) -> list[AppKey]:
    rows = await db.fetchall(
        "SELECT name, prefix, created_at, last_used_at, revoked_at, allow, rate, burst,"
        " expires_at, max_open FROM app_keys ORDER BY name"
    )
    return [
        AppKey(row[0], row[1], row[2], row[3], row[4], _rules(row[5]), *row[6:]) for row in rows
    ]


async def key_owners(db: Database) -> dict[str, KeyState]:
    """Map each key's hash to its app and state."""
    rows = await db.fetchall("SELECT key_hash, name, revoked_at, expires_at FROM app_keys")
    return {
        row[0]: KeyState(
            row[1],
            row[2] is not None,
            None if row[3] is None else datetime.fromisoformat(row[3]).timestamp(),
        )
        for row in rows
    }


async def key_limits(db: Database) -> dict[str, Limit]:
    """Each rate-limited app's limit."""
    rows = await db.fetchall("SELECT name, rate, burst FROM app_keys WHERE rate IS NOT NULL")
    return {row[0]: Limit(row[1], row[2]) for row in rows}


async def key_max_open(db: Database) -> dict[str, int]:
    """Each capped app's most calls open at once."""
    rows = await db.fetchall("SELECT name, max_open FROM app_keys WHERE max_open IS NOT NULL")
    return {row[0]: row[1] for row in rows}


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
