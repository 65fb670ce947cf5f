"""Where a store is: a SQLite file path, or a PostgreSQL URL; and how a URL is shown."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(database: str) -> bool:
    return database.startswith(SCHEMES)


def redacted(url: str) -> str:
    """`url` safe to log and print: its password (and any query, which may carry one) is
    replaced by ***. Pure."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        name, colon, _ = user.partition(":")
        netloc = f"{name}{':***' if colon else ''}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, "***" if parts.query else "", ""))


def password_of(url: str) -> str | None:
    """The password a PostgreSQL URL carries, if any (to scrub from every log line)."""
    return urlsplit(url).password if is_postgres_url(url) else None
