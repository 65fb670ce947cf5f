"""The team's Parallel key: from an environment variable, or from a file re-read on change."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping

import structlog

from ..config import ConfigError, Settings, UpstreamSettings
from ..ops.periodic import Periodic

log = structlog.get_logger("gateway.team_key")
MAX_KEY_BYTES = 4096


class TeamKeyError(ConfigError):
    """An api_key_file that cannot be read, or does not hold a key."""


def team_key_from(settings: Settings, env: Mapping[str, str]) -> str | None:
    """upstream.api_key_file when set (a Docker or Kubernetes secret), else the environment."""
    upstream = settings.upstream
    if upstream.api_key_file:
        return read_key_file(upstream.api_key_file)
    return env.get(upstream.api_key_env) or None


def read_key_file(path: str) -> str:
    """The key in `path`: its one line, without surrounding whitespace."""
    where = f"Config 'upstream.api_key_file' names '{path}'"
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_KEY_BYTES + 1)
    except OSError as e:
        raise TeamKeyError(f"{where}, which cannot be read: {e.strerror}.") from None
    try:
        key = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise TeamKeyError(f"{where}, which holds bytes that are not ASCII.") from None
    # Whatever the file holds goes into a header: one printable token, nothing else.
    if not key or len(raw) > MAX_KEY_BYTES or not all(33 <= ord(c) <= 126 for c in key):
        raise TeamKeyError(
            f"{where}, which does not hold one key: expected 1 to {MAX_KEY_BYTES} printable "
            "characters with no spaces, on one line."
        )
    return key


class KeyFileWatcher:
    """Re-reads upstream.api_key_file and hands a changed key to `on_change`.

    Called every upstream.api_key_file_interval seconds and on SIGHUP. A file that is missing or
    empty for a moment (a secret being replaced) leaves the current key in use.
    """

    def __init__(
        self, settings: UpstreamSettings, current: str | None, on_change: Callable[[str], None]
    ) -> None:
        self._path = settings.api_key_file
        self._on_change = on_change
        # The key in use, as read at start: a file changed since is a rotation like any other.
        self._current = current
        self._failing = False

    async def check(self, why: str = "interval") -> None:
        try:
            key = read_key_file(self._path)
        except TeamKeyError as e:
            if not self._failing:  # once per failure, not once per interval
                log.warning("upstream.key_file_unreadable", path=self._path, message=str(e))
            self._failing = True
            return
        self._failing = False
        if key != self._current:
            self._current = key
            self._on_change(key)
            log.info("upstream.key_rotated", path=self._path, trigger=why)


@contextlib.asynccontextmanager
async def key_file_rotation(
    settings: UpstreamSettings, current: str | None, on_change: Callable[[str], None]
) -> AsyncIterator[KeyFileWatcher | None]:
    """While serving: re-read upstream.api_key_file every api_key_file_interval. Yields its
    watcher (None without a key file, or offline), whose check SIGHUP calls too."""
    if not settings.api_key_file or settings.offline:
        yield None
        return
    watcher = KeyFileWatcher(settings, current, on_change)
    chore = Periodic("upstream.key_file", settings.api_key_file_interval, watcher.check)
    chore.start()
    try:
        yield watcher
    finally:
        await chore.stop()
