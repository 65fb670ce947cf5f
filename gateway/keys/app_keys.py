"""App keys: generate and hash them, and the rules of their lifecycle; kept (hashes only)
through the AppKeys protocol."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..billing.periods import Budget
from ..storage.protocols import AppKeys
from ..storage.types import KEEP, AppKey, Deleted, Keep, KeyChanges, NewKey, ReplayMode
from ..timestamps import now_rfc3339, rfc3339
from .allowlist import AllowError, Rule, parse_rule
from .ratelimit import Limit

KEY_PREFIX = "pgw_"
DISPLAY_CHARS = 8
DURATION = re.compile(r"(0|[1-9][0-9]{0,5})([smhdw])")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class AppKeyError(Exception):
    """A key command that cannot be carried out (duplicate or unknown name)."""


@dataclass(frozen=True, slots=True)
class KeyUpdate:
    """What `keys update` changes: a field left at KEEP stays as it is; None removes it."""

    allow: Sequence[str] | Keep | None = KEEP
    limit: Limit | Keep | None = KEEP
    expires_at: datetime | Keep | None = KEEP
    max_open: int | Keep | None = KEEP
    replay: ReplayMode | Keep = KEEP
    budget: Budget | Keep | None = KEEP


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


def parse_budget(usd: float | None, per: str | None) -> Budget | None:
    """`--budget USD --per day|week|month`: both or neither."""
    if usd is None and per is None:
        return None
    if usd is None or per is None:
        raise AppKeyError("--budget and --per go together: a budget is USD per day, week or month.")
    if not (0 <= usd <= 1e12):  # also refuses NaN
        raise AppKeyError(f"Budget {usd!r} is not valid: use USD, 0 or more.")
    return Budget(usd, per)


def generate_key() -> str:
    """`pgw_` and 43 URL-safe characters: 256 bits from `secrets`."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    # A fast hash is enough: keys carry 256 random bits, so there is nothing to brute-force.
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    return key[: len(KEY_PREFIX) + DISPLAY_CHARS]


async def create_key(
    keys: AppKeys,
    name: str,
    allow: Sequence[str] | None = None,
    limit: Limit | None = None,
    expires_at: datetime | None = None,
    max_open: int | None = None,
    replay: ReplayMode = ReplayMode.OFF,
    budget: Budget | None = None,
) -> str:
    """Create a key for app `name` and return it; only its hash is stored.

    `allow` limits the key to those route rules ("GET /v1/tasks/runs/*"); None allows all.
    `limit` is its rate limit, `expires_at` when it stops working, and `max_open` how many of
    its calls may be open at once, `budget` its estimated spend per period; None for none of
    them. `replay` is what its creates do with recordings (README: Run your app's tests
    offline).
    """
    if not name or len(name) > 64 or not name.isprintable():
        raise AppKeyError(f"App name {name!r} is not valid: use 1 to 64 printable characters.")
    rules = _checked_rules(allow)
    check_max_open(max_open)
    key = generate_key()
    created = await keys.create(
        NewKey(
            name,
            hash_key(key),
            display_prefix(key),
            now_rfc3339(),
            rules,
            None if limit is None else limit.rate,
            None if limit is None else limit.burst,
            None if expires_at is None else rfc3339(expires_at),
            max_open,
            replay,
            None if budget is None else budget.usd,
            None if budget is None else budget.per,
        )
    )
    if not created:
        raise await _name_taken(keys, name)
    return key


async def _name_taken(keys: AppKeys, name: str) -> AppKeyError:
    """Why `keys create NAME` cannot have the name, and the command that would free it."""
    app = await keys.get(name)
    if app is not None and app.revoked_at is not None:
        return AppKeyError(
            f"The name {name!r} is taken by a revoked app (revoked at {app.revoked_at}); "
            f"`parallel-gateway keys delete {name} --yes` frees it."
        )
    return AppKeyError(
        f"An app named {name!r} already exists; `parallel-gateway keys rotate {name}` gives it "
        "a new key."
    )


def _checked_rules(allow: Sequence[str] | None) -> list[str] | None:
    """The allowlist's rules, each checked; None for every route."""
    try:
        return None if allow is None else [parse_rule(text).text for text in allow]
    except AllowError as e:
        raise AppKeyError(str(e)) from None


def key_changes(update: KeyUpdate) -> KeyChanges:
    """What `update` asks for, checked, as stored. Pure."""
    limit, budget = update.limit, update.budget
    if update.max_open is not KEEP:
        check_max_open(update.max_open)
    return KeyChanges(
        allow=KEEP if update.allow is KEEP else _checked_rules(update.allow),
        rate=KEEP if limit is KEEP else None if limit is None else limit.rate,
        burst=KEEP if limit is KEEP else None if limit is None else limit.burst,
        expires_at=(
            KEEP
            if update.expires_at is KEEP
            else None
            if update.expires_at is None
            else rfc3339(update.expires_at)
        ),
        max_open=update.max_open,
        replay=update.replay,
        budget_usd=KEEP if budget is KEEP else None if budget is None else budget.usd,
        budget_per=KEEP if budget is KEEP else None if budget is None else budget.per,
    )


async def update_key(keys: AppKeys, name: str, update: KeyUpdate) -> None:
    """Change what `update` names of a live (not revoked) app's key, in one write."""
    changes = key_changes(update)
    revoked_at = (await _app(keys, name)).revoked_at
    if revoked_at is not None:
        raise AppKeyError(
            f"The key of app {name!r} was revoked at {revoked_at}; rotate it "
            f"(`parallel-gateway keys rotate {name}`) or create a new one."
        )
    await keys.update(name, changes)


def check_max_open(max_open: int | None) -> None:
    if max_open is not None and max_open < 1:
        raise AppKeyError(f"--max-open must be at least 1, not {max_open}.")


async def _app(keys: AppKeys, name: str) -> AppKey:
    """App `name`; AppKeyError for no such app."""
    app = await keys.get(name)
    if app is None:
        raise AppKeyError(f"No app named {name!r}.")
    return app


async def rotate_key(keys: AppKeys, name: str, grace: timedelta, now: datetime) -> str:
    """Give app `name` a new key and return it. Its key until now keeps working for `grace`
    (under the app's revocation and expiry), then stops; it is kept, by hash, so that its
    refusals name the app. A revoked app becomes active again, its old keys staying dead."""
    app = await _app(keys, name)
    if app.revoked_at is not None and grace:
        raise AppKeyError(
            f"The key of app {name!r} was revoked at {app.revoked_at}: it gets no grace period; "
            "rotate without --grace."
        )
    if app.expires_at is not None and app.expires_at <= rfc3339(now):
        raise AppKeyError(
            f"App {name!r} expired at {app.expires_at}, and a new key would be expired too; "
            f"give it a new expiry first (keys update {name} --expires DURATION, or --no-expiry)."
        )
    key = generate_key()
    await keys.rotate(name, hash_key(key), display_prefix(key), rfc3339(now), rfc3339(now + grace))
    return key


async def delete_app(keys: AppKeys, name: str) -> Deleted:
    """Remove a revoked app: its keys, replaced ones included, and its run records, so that
    a new app of the same name starts with nothing of the old one's."""
    if (await _app(keys, name)).revoked_at is None:
        raise AppKeyError(
            f"App {name!r} is not revoked: revoke it first (`parallel-gateway keys revoke "
            f"{name}`), then delete it."
        )
    return await keys.delete_revoked(name)


async def revoke_key(keys: AppKeys, name: str) -> None:
    """Revoke app `name`: its key, and any key rotation replaced, stop at once."""
    revoked_at = (await _app(keys, name)).revoked_at
    if revoked_at is not None:
        raise AppKeyError(f"The key of app {name!r} was already revoked at {revoked_at}.")
    await keys.revoke(name, now_rfc3339())


@dataclass(frozen=True, slots=True)
class KeyPolicies:
    """What each app's key allows, as the KeyRing applies it."""

    rules: dict[str, tuple[Rule, ...]]  # the apps whose keys have an allowlist
    limits: dict[str, Limit]  # the rate-limited apps
    max_open: dict[str, int]  # the apps whose open calls are capped
    replay: dict[str, ReplayMode]  # the apps whose replay mode is not off


def key_policies(apps: Sequence[AppKey]) -> KeyPolicies:
    """Each app's route rules, rate limit and open-call cap, where it has any. Pure."""
    return KeyPolicies(
        rules={
            a.name: tuple(parse_rule(text) for text in a.allow) for a in apps if a.allow is not None
        },
        limits={
            a.name: Limit(a.rate, a.burst)
            for a in apps
            if a.rate is not None and a.burst is not None
        },
        max_open={a.name: a.max_open for a in apps if a.max_open is not None},
        replay={a.name: a.replay for a in apps if a.replay is not ReplayMode.OFF},
    )
