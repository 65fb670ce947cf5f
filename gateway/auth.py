"""Request authentication: which app a gateway key belongs to, kept fresh from the database."""

from __future__ import annotations

from collections.abc import Mapping

from .allowlist import Rule, is_allowed
from .db import Database
from .errors import AuthenticationError, ForbiddenError
from .keys import hash_key, key_owners, key_rules, record_last_used
from .store import now_rfc3339

BEARER = "bearer "


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key an app sent: `x-api-key` (what the SDK sends), else `Authorization: Bearer`."""
    key = headers.get("x-api-key")
    if key:
        return key
    authorization = headers.get("authorization")
    if authorization and authorization[:7].lower() == BEARER:
        return authorization[7:].strip() or None
    return None


class KeyRing:
    """Key hashes in memory, reloaded from SQLite so CLI changes apply without a restart."""

    def __init__(
        self,
        owners: dict[str, tuple[str, bool]] | None = None,
        rules: dict[str, tuple[Rule, ...]] | None = None,
    ) -> None:
        self._owners = owners or {}
        self._rules = rules or {}
        self._used: set[str] = set()

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
        owner = self._owners.get(hash_key(key))
        if owner is None:
            raise AuthenticationError("Unauthorized: invalid gateway key.")
        name, revoked = owner
        if revoked:
            raise AuthenticationError("Unauthorized: this gateway key has been revoked.")
        self._used.add(name)
        return name

    async def refresh(self, db: Database) -> None:
        """Reload keys, and record which apps were seen since the last refresh."""
        used, self._used = self._used, set()
        if used:
            await record_last_used(db, used, now_rfc3339())
        self._owners = await key_owners(db)
        self._rules = await key_rules(db)
