"""Settings: frozen dataclasses loaded from TOML, with clear errors naming the bad key."""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from .storage.location import is_postgres_url

CONFIG_ENV = "PARALLEL_GATEWAY_CONFIG"
# Overrides storage.database, so a PostgreSQL URL's password can stay out of files.
DATABASE_ENV = "PARALLEL_GATEWAY_DATABASE"
MAX_POOL_SIZE = 1000
DATA_DIRECTORY = "parallel-gateway"
SYNCHRONOUS_MODES = ("normal", "full", "extra")
LOG_LEVELS = ("debug", "info", "warning", "error")
ISOLATION_MODES = ("team", "app")
PORT_RANGE = "Must be a port number from 0 to 65535"
MAX_HEAD_LIMIT = 1024 * 1024


class ConfigError(Exception):
    """A config file that cannot be read or holds a bad value."""


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 10 * 1024 * 1024
    shutdown_grace: float = 30.0
    # Request head limits (aiohttp's defaults) and how long a client may take to send a head.
    max_line_bytes: int = 8190
    max_header_bytes: int = 8190
    max_headers: int = 128
    header_timeout: float = 10.0
    # Run on uvloop where it is installed (a dependency on CPython outside Windows), else asyncio.
    uvloop: bool = True


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    base_url: str = "https://api.parallel.ai"
    api_key_env: str = "PARALLEL_API_KEY"
    api_key_file: str = ""
    api_key_file_interval: float = 1.0
    offline: bool = False
    connect_timeout: float = 5.0
    timeout: float = 30.0
    deadline: float = 60.0
    max_attempts: int = 4
    backoff_initial: float = 0.25
    backoff_max: float = 4.0
    retry_after_cap: float = 10.0
    max_short_calls: int = 256
    queue_timeout: float = 5.0
    long_poll_timeout: float = 660.0
    stream_idle_timeout: float = 120.0


# Keys whose meaning changed with their name: an old config is refused, saying the new one.
# upstream.max_connections bounded every call; upstream.max_short_calls bounds short ones only.
RENAMED = {"upstream": {"max_connections": "max_short_calls"}}


@dataclass(frozen=True, slots=True)
class StorageSettings:
    database: str = "parallel-gateway.db"
    busy_timeout_ms: int = 5000
    synchronous: str = "normal"
    pool_size: int = 10


@dataclass(frozen=True, slots=True)
class CacheSettings:
    memory_entries: int = 10_000
    memory_bytes: int = 64 * 1024 * 1024
    max_body_bytes: int = 1024 * 1024
    sync_interval: float = 1.0


@dataclass(frozen=True, slots=True)
class KeysSettings:
    refresh_interval: float = 1.0
    share_interval: float = 0.25


@dataclass(frozen=True, slots=True)
class IsolationSettings:
    mode: str = "team"


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    port: int = 0
    token: str = ""


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = "info"
    access_log: bool = True


@dataclass(frozen=True, slots=True)
class BillingSettings:
    flush_interval: float = 5.0


@dataclass(frozen=True, slots=True)
class PricesSettings:
    """USD per call: Parallel's published prices (config.example.toml says when they were
    taken); a team with its own contract overrides them."""

    task_lite: float = 0.005
    task_base: float = 0.01
    task_core: float = 0.025
    task_core2x: float = 0.05
    task_pro: float = 0.1
    task_ultra: float = 0.3
    task_ultra2x: float = 0.6
    task_ultra4x: float = 1.2
    task_ultra8x: float = 2.4
    search: float = 0.005
    extract: float = 0.001
    findall_preview: float = 0.1
    findall_base: float = 0.25
    findall_core: float = 2.0
    findall_pro: float = 10.0


@dataclass(frozen=True, slots=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    upstream: UpstreamSettings = field(default_factory=UpstreamSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    keys: KeysSettings = field(default_factory=KeysSettings)
    isolation: IsolationSettings = field(default_factory=IsolationSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    log: LogSettings = field(default_factory=LogSettings)
    billing: BillingSettings = field(default_factory=BillingSettings)
    prices: PricesSettings = field(default_factory=PricesSettings)


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read settings from `path`, else from $PARALLEL_GATEWAY_CONFIG, else use the defaults
    (with the database in the user's data directory)."""
    env = os.environ if env is None else env
    named = f"Config file '{path}'"
    if path is None:
        path = env.get(CONFIG_ENV) or None
        named = f"Config file '{path}' (from ${CONFIG_ENV})"
    if path is None:
        return with_database_from(env, beside(Settings(), data_home(env)))
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{named} does not exist.") from None
    except OSError as e:
        raise ConfigError(f"{named} cannot be read: {e.strerror}.") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{named} is not valid TOML: {e}.") from None
    settings = beside(settings_from_dict(data), Path(os.path.abspath(path)).parent)
    return with_database_from(env, settings)


def with_database_from(env: Mapping[str, str], settings: Settings) -> Settings:
    """The settings with storage.database from $PARALLEL_GATEWAY_DATABASE, when it is set (a
    relative path in it is the current directory's, as for any path in the environment)."""
    database = env.get(DATABASE_ENV, "")
    if not database:
        return settings
    if not is_postgres_url(database):
        database = os.path.abspath(os.path.expanduser(database))
    return dataclasses.replace(
        settings, storage=dataclasses.replace(settings.storage, database=database)
    )


def data_home(env: Mapping[str, str]) -> Path:
    """Where the gateway keeps its database when no config file says: the same directory for
    every command, wherever it runs. $XDG_DATA_HOME/parallel-gateway, else (the XDG Base
    Directory default) ~/.local/share/parallel-gateway; a relative XDG_DATA_HOME is ignored,
    as the spec says."""
    xdg = env.get("XDG_DATA_HOME", "")
    if os.path.isabs(xdg):
        return Path(xdg) / DATA_DIRECTORY
    home = env.get("HOME") or os.path.expanduser("~")
    return Path(home) / ".local" / "share" / DATA_DIRECTORY


def beside(settings: Settings, directory: Path) -> Settings:
    """The settings with relative file paths (storage.database, upstream.api_key_file) taken
    from `directory`, the config file's: a command run from anywhere finds the same files."""

    def anchored(value: str) -> str:
        path = Path(value).expanduser()
        if not value or path.is_absolute() or is_postgres_url(value):
            return value
        return str(directory / path)

    storage = dataclasses.replace(settings.storage, database=anchored(settings.storage.database))
    upstream = dataclasses.replace(
        settings.upstream, api_key_file=anchored(settings.upstream.api_key_file)
    )
    return dataclasses.replace(settings, storage=storage, upstream=upstream)


def settings_from_dict(data: Mapping[str, Any]) -> Settings:
    """Build Settings from parsed TOML, rejecting unknown keys and bad values."""
    sections: dict[str, Any] = {}
    section_types = get_type_hints(Settings)
    for name, value in data.items():
        if name not in section_types and not isinstance(value, dict):
            # `port = 9000` above every [section] header
            homes = [s for s, cls in section_types.items() if name in get_type_hints(cls)]
            where = f"; it belongs under [{homes[0]}]" if homes else ""
            raise ConfigError(f"Config has key '{name}' outside any [section]{where}.")
        if name not in section_types:
            raise ConfigError(f"Config has unknown section '[{name}]'.{_hint(name, section_types)}")
        if not isinstance(value, dict):
            raise ConfigError(f"Config '{name}' must be a table ([{name}]).")
        sections[name] = _build_section(name, section_types[name], value)
    settings = Settings(**sections)
    _check(settings)
    return settings


def replace_server(
    settings: Settings, host: str | None, port: int | None, offline: bool = False
) -> Settings:
    """Apply `serve --host/--port/--offline` overrides."""
    if offline:
        upstream = dataclasses.replace(settings.upstream, offline=True)
        settings = dataclasses.replace(settings, upstream=upstream)
    server = settings.server
    if host is not None:
        server = dataclasses.replace(server, host=host)
    if port is not None:
        server = dataclasses.replace(server, port=port)
    if not 0 <= server.port <= 65535:
        raise ConfigError(f"Option '--port' has value {server.port!r}. {PORT_RANGE}.")
    return dataclasses.replace(settings, server=server)


def _build_section(section: str, cls: type[Any], values: Mapping[str, Any]) -> Any:
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key in RENAMED.get(section, {}):
            raise ConfigError(
                f"Config key '{section}.{key}' is now '{section}.{RENAMED[section][key]}'."
            )
        if key not in hints:
            raise ConfigError(f"Config has unknown key '{section}.{key}'.{_hint(key, hints)}")
        kwargs[key] = _coerce(f"{section}.{key}", hints[key], value)
    return cls(**kwargs)


def _hint(name: str, known: Iterable[str]) -> str:
    """A hint naming the closest known name, for a misspelt one; else ""."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


def _coerce(name: str, expected: type, value: Any) -> Any:
    # TOML distinguishes ints, floats, strings and booleans; bool is a subclass of int in Python.
    if expected is bool:
        ok = isinstance(value, bool)
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(f"Config '{name}' has value {value!r}. Not a valid {expected.__name__}.")
    return value


def _check(s: Settings) -> None:
    if not 0 <= s.server.port <= 65535:
        _bad("server.port", s.server.port, PORT_RANGE)
    if not 0 <= s.metrics.port <= 65535:
        _bad("metrics.port", s.metrics.port, PORT_RANGE)
    if not s.upstream.base_url.lower().startswith(("http://", "https://")):
        _bad("upstream.base_url", s.upstream.base_url, "Must start with http:// or https://")
    if not s.upstream.api_key_env:
        _bad("upstream.api_key_env", s.upstream.api_key_env, "Must name an environment variable")
    positive = {
        "upstream.connect_timeout": s.upstream.connect_timeout,
        "upstream.timeout": s.upstream.timeout,
        "upstream.deadline": s.upstream.deadline,
        "upstream.max_attempts": s.upstream.max_attempts,
        "upstream.backoff_initial": s.upstream.backoff_initial,
        "upstream.backoff_max": s.upstream.backoff_max,
        "upstream.max_short_calls": s.upstream.max_short_calls,
        "upstream.queue_timeout": s.upstream.queue_timeout,
        "upstream.long_poll_timeout": s.upstream.long_poll_timeout,
        "upstream.stream_idle_timeout": s.upstream.stream_idle_timeout,
        "upstream.api_key_file_interval": s.upstream.api_key_file_interval,
        "server.max_body_bytes": s.server.max_body_bytes,
        "server.shutdown_grace": s.server.shutdown_grace,
        "server.header_timeout": s.server.header_timeout,
        "storage.busy_timeout_ms": s.storage.busy_timeout_ms,
        "cache.memory_entries": s.cache.memory_entries,
        "cache.memory_bytes": s.cache.memory_bytes,
        "cache.max_body_bytes": s.cache.max_body_bytes,
        "cache.sync_interval": s.cache.sync_interval,
        "keys.refresh_interval": s.keys.refresh_interval,
        "keys.share_interval": s.keys.share_interval,
        "billing.flush_interval": s.billing.flush_interval,
    }
    for name, value in positive.items():
        if not (value > 0 and _finite(value)):  # written so that NaN fails too
            _bad(name, value, "Must be a finite number greater than 0")
    head_limits = {
        "server.max_line_bytes": s.server.max_line_bytes,
        "server.max_header_bytes": s.server.max_header_bytes,
        "server.max_headers": s.server.max_headers,
    }
    for name, value in head_limits.items():
        # Far past any real client's head; the bound also keeps them within the parser's C size_t.
        if not 1 <= value <= MAX_HEAD_LIMIT:
            _bad(name, value, f"Must be a whole number from 1 to {MAX_HEAD_LIMIT}")
    cap = s.upstream.retry_after_cap
    if not (cap >= 0 and _finite(cap)):
        _bad("upstream.retry_after_cap", cap, "Must be a finite number, 0 or more")
    if not s.storage.database:
        _bad("storage.database", s.storage.database, "Must be a file path or a postgresql:// URL")
    if not 1 <= s.storage.pool_size <= MAX_POOL_SIZE:
        _bad(
            "storage.pool_size",
            s.storage.pool_size,
            f"Must be a whole number from 1 to {MAX_POOL_SIZE}",
        )
    for price in dataclasses.fields(s.prices):
        value = getattr(s.prices, price.name)
        if not (value >= 0 and _finite(value)):
            _bad(f"prices.{price.name}", value, "Must be a finite number of USD, 0 or more")
    if s.storage.synchronous not in SYNCHRONOUS_MODES:
        _bad("storage.synchronous", s.storage.synchronous, f"Must be one of {SYNCHRONOUS_MODES}")
    if s.isolation.mode not in ISOLATION_MODES:
        _bad("isolation.mode", s.isolation.mode, f"Must be one of {ISOLATION_MODES}")
    if s.log.level not in LOG_LEVELS:
        _bad("log.level", s.log.level, f"Must be one of {LOG_LEVELS}")


def _finite(value: float) -> bool:
    # An int is always finite (math.isfinite would overflow on one too big for a float).
    return isinstance(value, int) or math.isfinite(value)


def _bad(name: str, value: object, why: str) -> None:
    raise ConfigError(f"Config '{name}' has value {value!r}. {why}.")
