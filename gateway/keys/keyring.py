"""Request authentication: which app a gateway key belongs to, kept fresh from the database."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Container, Mapping
from datetime import UTC, datetime

from ..errors import AuthenticationError, ForbiddenError, RateLimitedError, TooManyOpenError
from ..storage.protocols import AppKeys
from ..storage.types import KeyState, ReplayMode, Usage
from ..timestamps import now_rfc3339, rfc3339
from .allowlist import Rule, is_allowed
from .app_keys import hash_key, key_policies
from .ratelimit import Limit, TokenBucket, retry_after_headers
from .shared_limits import PeerTotals

BEARER = "bearer "
# sha256 of the keys presented most recently, as an app sends the same key on every request.
# Bounded: ever-new (invalid) keys only cycle it. The keys stay in process memory only, as they
# do while their requests are served; nothing here reaches a log line or a metric.
_hash_recent = functools.lru_cache(maxsize=1024)(hash_key)


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key an app sent: `x-api-key` (what the SDK sends), else `Authorization: Bearer`."""
    key = headers.get("x-api-key")
    if key:
        return key
    authorization = headers.get("authorization")
    if authorization and authorization[:7].lower() == BEARER:
        return authorization[7:].strip() or None
    return None


def _timestamp(seconds: float) -> str:
    return rfc3339(datetime.fromtimestamp(seconds, UTC))


class KeyRing:
    """Key hashes in memory, reloaded from storage so CLI changes apply without a restart."""

    def __init__(
        self,
        owners: dict[str, KeyState] | None = None,
        rules: dict[str, tuple[Rule, ...]] | None = None,
        *,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._owners = owners or {}
        self._rules = rules or {}
        self._buckets: dict[str, TokenBucket] = {}
        self._max_open: dict[str, int] = {}  # the apps whose keys cap their open calls
        self._replay: dict[str, ReplayMode] = {}  # the apps whose replay mode is not off
        self._open: dict[str, int] = {}  # calls open now, per app
        # With replicas: calls this one admitted under a rate limit since it started, and the
        # calls the other replicas hold open, per app (see shared_limits.py).
        self._taken: dict[str, int] = {}
        # When this replica began counting each app's calls (POSIX seconds): its first limit.
        self._counting_since: dict[str, float] = {}
        self._peer_open: dict[str, int] = {}
        self._used: set[str] = set()
        self._wall_clock = wall_clock  # for expiry
        self._clock = clock  # for rate limits

    def throttle(self, app: str) -> None:
        """Raise RateLimitedError when the app's token bucket (if it has one) is empty."""
        bucket = self._buckets.get(app)
        if bucket is None:
            return
        wait = bucket.take(self._clock())
        if not wait:
            self._taken[app] = self._taken.get(app, 0) + 1
            return
        limit = bucket.limit
        raise RateLimitedError(
            f"Rate limit exceeded: app {app!r} may make {limit.rate:g} requests per second "
            f"(bursts of {limit.burst}); retry in {wait:.3f} s.",
            headers=retry_after_headers(wait),
        )

    def take_turn(self, app: str, *, hold: bool) -> None:
        """The last checks before a call is served, after every refusal it could get: its
        open calls (429, keys --max-open), then its rate limit (429), so a refused call never
        takes a token. With `hold`, the call counts as open until close_call; a hit, answered
        at once, holds nothing."""
        cap = self._max_open.get(app)
        open_now = self._open.get(app, 0)
        if cap is not None and open_now + self._peer_open.get(app, 0) >= cap:
            raise TooManyOpenError(
                f"Too many open calls: app {app!r} may have {cap} calls open at once through the "
                "gateway; retry when one has ended.",
                headers={"retry-after": "1"},
            )
        self.throttle(app)
        if hold:
            self._open[app] = open_now + 1

    def close_call(self, app: str) -> None:
        """A call held by take_turn has ended."""
        left = self._open[app] - 1
        if left:
            self._open[app] = left
        else:
            del self._open[app]

    def usage(self, replica: str, started: float) -> list[Usage]:
        """What this replica (started at `started`) has let each limited or capped app do,
        for the other replicas; each row's `started` is when it began counting the app's
        calls, so a replica that first sees the row knows whether they happened in its time."""
        apps = sorted(self._buckets.keys() | self._max_open.keys())
        taken, open_calls, since = self._taken, self._open, self._counting_since
        return [
            Usage(replica, a, taken.get(a, 0), open_calls.get(a, 0), since.get(a, started))
            for a in apps
        ]

    def rate_limited(self) -> Container[str]:
        """The apps with a rate limit here."""
        return self._buckets.keys()

    def absorb_peers(self, totals: PeerTotals) -> None:
        """Count what the other replicas did: their new calls against the buckets, their open
        calls against the caps."""
        now = self._clock()
        for app, tokens in totals.taken.items():
            bucket = self._buckets.get(app)
            if bucket is not None:
                bucket.debit(tokens, now)
        self._peer_open = totals.open

    def replay_mode(self, app: str) -> ReplayMode:
        """What the app's creates do with recordings (keys --replay)."""
        return self._replay.get(app, ReplayMode.OFF)

    def restricted(self, app: str) -> bool:
        """Whether the app's key has an allowlist."""
        return app in self._rules

    def authorize(self, app: str, method: str, raw_path: str) -> None:
        """Raise ForbiddenError unless the app's allowlist (if it has one) covers this call."""
        if not is_allowed(self._rules.get(app), method, raw_path):
            raise ForbiddenError(
                f"Forbidden: the key of app {app!r} may not call {method} {raw_path[:200]}."
            )

    def authenticate(self, headers: Mapping[str, str]) -> str:
        """Return the app name for the request's key, or raise AuthenticationError."""
        key = presented_key(headers)
        if key is None:
            raise AuthenticationError(
                "Unauthorized: missing gateway key; send it in the x-api-key header."
            )
        owner = self._owners.get(_hash_recent(key))
        if owner is None:
            raise AuthenticationError("Unauthorized: invalid gateway key.")
        name = owner.name
        if owner.revoked:
            raise AuthenticationError("Unauthorized: this gateway key has been revoked.", app=name)
        now = self._wall_clock()
        if owner.retires is not None and now >= owner.retires:
            raise AuthenticationError(
                "Unauthorized: this gateway key was replaced by a new one and stopped working "
                f"at {_timestamp(owner.retires)}.",
                app=name,
            )
        if owner.expires is not None and now >= owner.expires:
            raise AuthenticationError(
                f"Unauthorized: this gateway key expired at {_timestamp(owner.expires)}.", app=name
            )
        self._used.add(name)
        return name

    async def refresh(self, keys: AppKeys) -> None:
        """Reload keys, and record which apps were seen since the last refresh."""
        used, self._used = self._used, set()
        if used:
            await keys.record_last_used(used, now_rfc3339())
        owners = await keys.key_states()
        policies = key_policies(await keys.list_apps())
        # All at once: a key must never be served between getting its owner and its limits.
        self._owners, self._rules, self._max_open = owners, policies.rules, policies.max_open
        self._replay = policies.replay
        self.set_limits(policies.limits)

    def set_limits(self, limits: Mapping[str, Limit]) -> None:
        """Apply changed rate limits; a bucket whose limit is unchanged keeps its state."""
        now = self._clock()
        buckets: dict[str, TokenBucket] = {}
        for app, limit in limits.items():
            bucket = self._buckets.get(app)
            if bucket is None:
                buckets[app] = TokenBucket(limit, now)
                self._counting_since.setdefault(app, self._wall_clock())
            elif bucket.limit != limit:
                buckets[app] = bucket.with_limit(limit, now)
            else:
                buckets[app] = bucket
        self._buckets = buckets
