"""App keys: generate, hash, and keep them in the `app_keys` table (hashes only)."""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson

from .allowlist import AllowError, Rule, parse_rule
from .db import Database, Statement
from .ownership import forget_app
from .ratelimit import Limit
from .store import now_rfc3339, rfc3339

KEY_PREFIX = "pgw_"
DISPLAY_CHARS = 8
DURATION = re.compile(r"(0|[1-9][0-9]{0,5})([smhdw])")
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
    retires: float | None = None  # a key replaced by `keys rotate`: when it stops; POSIX seconds


class Keep(enum.Enum):
    KEEP = "keep"


KEEP = Keep.KEEP


@dataclass(frozen=True, slots=True)
class KeyUpdate:
    """What `keys update` changes: a field left at KEEP stays as it is; None removes it."""

    allow: Sequence[str] | Keep | None = KEEP
    limit: Limit | Keep | None = KEEP
    expires_at: datetime | Keep | None = KEEP
    max_open: int | Keep | None = KEEP


def _duration(text: str, what: str) -> timedelta:
    """A whole number and a unit: 45s, 90m, 12h, 30d, 8w (0 included)."""
    match = DURATION.fullmatch(text.strip())
    if match is None:
        raise AppKeyError(
            f"{what} {text!r} is not valid: use a whole number and a unit, such as 90m, 12h, "
            "30d or 8w (s, m, h, d, w)."
        )
    return timedelta(seconds=int(match[1]) * UNIT_SECONDS[match[2]])


def parse_expiry(text: str, now: datetime) -> datetime:
    """`--expires 30d`: a count of s, m, h, d or w from `now`, more than 0."""
    duration = _duration(text, "Expiry")
    if not duration:
        raise AppKeyError(
            f"Expiry {text!r} is not valid: 0 is not allowed, as the key would never work; "
            "give a count from 1 (or stop a key now with keys revoke)."
        )
    return now + duration


def parse_grace(text: str) -> timedelta:
    """`keys rotate --grace 1h`: how long the replaced key keeps working; 0 (or 0s...): none."""
    return timedelta(0) if text.strip() == "0" else _duration(text, "Grace")


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
    rules = _allow_column(allow)
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
                rules,
                None if limit is None else limit.rate,
                None if limit is None else limit.burst,
                None if expires_at is None else rfc3339(expires_at),
                max_open,
            ),
        )
    except sqlite3.IntegrityError:
        raise await _name_taken(db, name) from None
    return key


async def _name_taken(db: Database, name: str) -> AppKeyError:
    """Why `keys create NAME` cannot have the name, and the command that would free it."""
    row = await db.fetchone("SELECT revoked_at FROM app_keys WHERE name = ?", (name,))
    if row is not None and row[0] is not None:
        return AppKeyError(
            f"The name {name!r} is taken by a revoked app (revoked at {row[0]}); "
            f"`parallel-gateway keys delete {name} --yes` frees it."
        )
    return AppKeyError(
        f"An app named {name!r} already exists; `parallel-gateway keys rotate {name}` gives it "
        "a new key."
    )


def _allow_column(allow: Sequence[str] | None) -> str | None:
    """The allowlist as stored: a JSON array of rules, each checked; None for every route."""
    try:
        rules = None if allow is None else [parse_rule(text).text for text in allow]
    except AllowError as e:
        raise AppKeyError(str(e)) from None
    return None if rules is None else orjson.dumps(rules).decode()


async def update_key(db: Database, name: str, update: KeyUpdate) -> None:
    """Change what `update` names of a live (not revoked) app's key, in one write."""
    columns: dict[str, object] = {}
    if update.allow is not KEEP:
        columns["allow"] = _allow_column(update.allow)
    if update.limit is not KEEP:
        limit = update.limit
        columns["rate"] = None if limit is None else limit.rate
        columns["burst"] = None if limit is None else limit.burst
    if update.expires_at is not KEEP:
        columns["expires_at"] = None if update.expires_at is None else rfc3339(update.expires_at)
    if update.max_open is not KEEP:
        check_max_open(update.max_open)
        columns["max_open"] = update.max_open
    revoked_at = await _revoked_at(db, name)
    if revoked_at is not None:
        raise AppKeyError(
            f"The key of app {name!r} was revoked at {revoked_at}; rotate it "
            f"(`parallel-gateway keys rotate {name}`) or create a new one."
        )
    # The column names are this function's own, never the caller's text.
    assignments = ", ".join(f"{column} = ?" for column in columns)
    await db.write(
        f"UPDATE app_keys SET {assignments} WHERE name = ?",  # noqa: S608
        (*columns.values(), name),
    )


def check_max_open(max_open: int | None) -> None:
    if max_open is not None and max_open < 1:
        raise AppKeyError(f"--max-open must be at least 1, not {max_open}.")


async def _revoked_at(db: Database, name: str) -> str | None:
    """When app `name`'s key was revoked (None: it was not); AppKeyError for no such app."""
    row = await db.fetchone("SELECT revoked_at FROM app_keys WHERE name = ?", (name,))
    if row is None:
        raise AppKeyError(f"No app named {name!r}.")
    revoked_at: str | None = row[0]
    return revoked_at


async def rotate_key(db: Database, name: str, grace: timedelta, now: datetime) -> str:
    """Give app `name` a new key and return it. Its key until now keeps working for `grace`
    (under the app's revocation and expiry), then stops; it is kept, by hash, so that its
    refusals name the app. A revoked app becomes active again, its old keys staying dead."""
    row = await db.fetchone("SELECT revoked_at, expires_at FROM app_keys WHERE name = ?", (name,))
    if row is None:
        raise AppKeyError(f"No app named {name!r}.")
    revoked_at, expires_at = row
    if revoked_at is not None and grace:
        raise AppKeyError(
            f"The key of app {name!r} was revoked at {revoked_at}: it gets no grace period; "
            "rotate without --grace."
        )
    if expires_at is not None and expires_at <= rfc3339(now):
        raise AppKeyError(
            f"App {name!r} expired at {expires_at}, and a new key would be expired too; give it "
            f"a new expiry first (keys update {name} --expires DURATION, or --no-expiry)."
        )
    key = generate_key()
    at = rfc3339(now)
    statements: list[Statement] = [
        (
            "INSERT INTO retired_keys (key_hash, app, prefix, created_at, retires_at)"
            " SELECT key_hash, name, prefix, created_at, ? FROM app_keys WHERE name = ?",
            [(rfc3339(now + grace), name)],
        ),
        (
            "UPDATE app_keys SET key_hash = ?, prefix = ?, created_at = ?, revoked_at = NULL"
            " WHERE name = ?",
            [(hash_key(key), display_prefix(key), at, name)],
        ),
    ]
    if revoked_at is not None:
        # Keys revoked in their grace period must not come back with the app.
        statements.append(
            (
                "UPDATE retired_keys SET retires_at = ? WHERE app = ? AND retires_at > ?",
                [(at, name, at)],
            )
        )
    await db.transaction(statements)
    return key


@dataclass(frozen=True, slots=True)
class Deleted:
    keys: int  # the app's key and the keys rotation replaced
    runs: int  # its records of runs created or granted


async def delete_app(db: Database, name: str) -> Deleted:
    """Remove a revoked app: its keys, replaced ones included, and its run records, so that
    a new app of the same name starts with nothing of the old one's."""
    if await _revoked_at(db, name) is None:
        raise AppKeyError(
            f"App {name!r} is not revoked: revoke it first (`parallel-gateway keys revoke "
            f"{name}`), then delete it."
        )
    runs, retired, current = await db.transaction(
        [
            forget_app(name),
            ("DELETE FROM retired_keys WHERE app = ?", [(name,)]),
            ("DELETE FROM app_keys WHERE name = ? AND revoked_at IS NOT NULL", [(name,)]),
        ]
    )
    return Deleted(retired + current, runs)


async def revoke_key(db: Database, name: str) -> None:
    """Revoke app `name`: its key, and any key rotation replaced, stop at once."""
    revoked_at = await _revoked_at(db, name)
    if revoked_at is not None:
        raise AppKeyError(f"The key of app {name!r} was already revoked at {revoked_at}.")
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
    """Map each key's hash, replaced keys' included, to its app and state."""
    rows = await db.fetchall(
        "SELECT key_hash, name, revoked_at, expires_at, NULL FROM app_keys"
        " UNION ALL SELECT r.key_hash, a.name, a.revoked_at, a.expires_at, r.retires_at"
        " FROM retired_keys r JOIN app_keys a ON a.name = r.app"
    )
    return {
        row[0]: KeyState(row[1], row[2] is not None, _seconds(row[3]), _seconds(row[4]))
        for row in rows
    }


def _seconds(at: str | None) -> float | None:
    return None if at is None else datetime.fromisoformat(at).timestamp()


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
