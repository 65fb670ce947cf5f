"""Settings from TOML and the environment: defaults, precedence, and errors that name the key."""

from __future__ import annotations

import contextlib
import dataclasses
import tomllib
from pathlib import Path
from typing import Any

import pytest

from gateway.config import (
    CONFIG_ENV,
    DATABASE_ENV,
    CacheSettings,
    ConfigError,
    IsolationSettings,
    KeysSettings,
    LogSettings,
    ServerSettings,
    Settings,
    StorageSettings,
    UpstreamSettings,
    beside,
    data_home,
    load_settings,
    replace_server,
)


def write(tmp_path: Path, text: str, name: str = "gateway.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def field_defaults(cls: type[Any]) -> dict[str, object]:
    return {f.name: f.default for f in dataclasses.fields(cls)}


def test_defaults_without_a_file() -> None:
    settings = load_settings(None, env={"HOME": "/home/ops"})
    assert settings == beside(Settings(), Path("/home/ops/.local/share/parallel-gateway"))
    assert field_defaults(ServerSettings) == {
        "host": "127.0.0.1",
        "port": 8080,
        "max_body_bytes": 10 * 1024 * 1024,
        "shutdown_grace": 30.0,
        "max_line_bytes": 8190,
        "max_header_bytes": 8190,
        "max_headers": 128,
        "header_timeout": 10.0,
        "uvloop": True,
    }
    assert field_defaults(UpstreamSettings) == {
        "base_url": "https://api.parallel.ai",
        "api_key_env": "PARALLEL_API_KEY",
        "api_key_file": "",
        "api_key_file_interval": 1.0,
        "offline": False,
        "connect_timeout": 5.0,
        "timeout": 30.0,
        "deadline": 60.0,
        "max_attempts": 4,
        "backoff_initial": 0.25,
        "backoff_max": 4.0,
        "retry_after_cap": 10.0,
        "max_short_calls": 256,
        "queue_timeout": 5.0,
        "long_poll_timeout": 660.0,
        "stream_idle_timeout": 120.0,
    }
    assert field_defaults(StorageSettings) == {
        "database": "parallel-gateway.db",
        "busy_timeout_ms": 5000,
        "synchronous": "normal",
        "pool_size": 10,
    }
    assert field_defaults(CacheSettings) == {
        "memory_entries": 10_000,
        "memory_bytes": 64 * 1024 * 1024,
        "max_body_bytes": 1024 * 1024,
        "sync_interval": 1.0,
    }
    assert field_defaults(KeysSettings) == {"refresh_interval": 1.0, "share_interval": 0.25}
    assert field_defaults(IsolationSettings) == {"mode": "team"}
    assert field_defaults(LogSettings) == {"level": "info", "access_log": True}
    assert settings.server.host == "127.0.0.1"
    assert settings.server.port == 8080
    assert settings.upstream.base_url == "https://api.parallel.ai"
    assert settings.upstream.api_key_env == "PARALLEL_API_KEY"
    assert Settings().storage.database == "parallel-gateway.db"
    assert (
        settings.storage.database == "/home/ops/.local/share/parallel-gateway/parallel-gateway.db"
    )


@pytest.mark.parametrize(
    ("env", "directory"),
    [
        ({"HOME": "/home/ops"}, "/home/ops/.local/share/parallel-gateway"),
        ({"HOME": "/home/ops", "XDG_DATA_HOME": "/srv/data"}, "/srv/data/parallel-gateway"),
        ({"HOME": "/home/ops", "XDG_DATA_HOME": ""}, "/home/ops/.local/share/parallel-gateway"),
        # The XDG Base Directory spec: a relative path in the variable is ignored.
        ({"HOME": "/home/ops", "XDG_DATA_HOME": "data"}, "/home/ops/.local/share/parallel-gateway"),
    ],
)
def test_without_a_config_file_the_database_is_in_the_users_data_directory(
    env: dict[str, str], directory: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # whatever the current directory
    assert data_home(env) == Path(directory)
    assert load_settings(None, env=env).storage.database == f"{directory}/parallel-gateway.db"


def test_empty_env_var_means_defaults() -> None:
    assert load_settings(None, env={CONFIG_ENV: ""}) == load_settings(None, env={})


def test_settings_are_frozen() -> None:
    settings = load_settings(None, env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.server.port = 1  # type: ignore[misc]


FULL = """\
[server]
host = "192.0.2.10"
port = 9000

[upstream]
base_url = "http://127.0.0.1:9999"
api_key_env = "TEAM_PARALLEL_KEY"
timeout = 12.5
max_attempts = 2

[storage]
database = "/var/lib/gateway/cache.db"
synchronous = "full"

[cache]
memory_entries = 5

[log]
level = "debug"
access_log = false
"""


def test_file_is_read(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, FULL), env={})
    assert settings == Settings(
        server=ServerSettings(host="192.0.2.10", port=9000),
        upstream=UpstreamSettings(
            base_url="http://127.0.0.1:9999",
            api_key_env="TEAM_PARALLEL_KEY",
            timeout=12.5,
            max_attempts=2,
        ),
        storage=StorageSettings(database="/var/lib/gateway/cache.db", synchronous="full"),
        cache=CacheSettings(memory_entries=5),
        log=LogSettings(level="debug", access_log=False),
    )


def test_file_path_as_str(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 9001\n")
    assert load_settings(str(path), env={}).server.port == 9001


def test_empty_file_means_defaults_with_the_database_beside_it(tmp_path: Path) -> None:
    defaults = beside(Settings(), tmp_path)
    assert defaults.storage.database == str(tmp_path / "parallel-gateway.db")
    assert load_settings(write(tmp_path, ""), env={}) == defaults


def test_relative_paths_in_a_config_file_are_from_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "etc").mkdir()
    write(
        tmp_path / "etc", '[storage]\ndatabase = "data/gw.db"\n[upstream]\napi_key_file = "key"\n'
    )
    monkeypatch.chdir(tmp_path)  # a relative --config, from elsewhere
    settings = load_settings("etc/gateway.toml", env={})
    assert settings.storage.database == str(tmp_path / "etc" / "data" / "gw.db")
    assert settings.upstream.api_key_file == str(tmp_path / "etc" / "key")
    absolute = write(tmp_path, f'[storage]\ndatabase = "{tmp_path}/x.db"\n')
    assert load_settings(absolute, env={}).storage.database == f"{tmp_path}/x.db"
    assert load_settings(None, env={"XDG_DATA_HOME": "/d"}).storage.database == (
        "/d/parallel-gateway/parallel-gateway.db"  # no file: the user's data directory
    )


def test_env_var_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 1111\n")
    assert load_settings(None, env={CONFIG_ENV: str(path)}).server.port == 1111


def test_process_environment_is_the_default_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "[server]\nport = 1212\n")
    monkeypatch.setenv(CONFIG_ENV, str(path))
    assert load_settings().server.port == 1212


def test_explicit_path_beats_env_var(tmp_path: Path) -> None:
    from_env = write(tmp_path, "[server]\nport = 1111\n", "env.toml")
    explicit = write(tmp_path, "[server]\nport = 2222\n", "explicit.toml")
    assert load_settings(explicit, env={CONFIG_ENV: str(from_env)}).server.port == 2222
    missing = tmp_path / "missing.toml"
    assert load_settings(explicit, env={CONFIG_ENV: str(missing)}).server.port == 2222


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as e:
        load_settings(path, env={})
    assert str(e.value) == f"Config file '{path}' does not exist."


def test_missing_file_named_by_env_var(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as e:
        load_settings(None, env={CONFIG_ENV: str(path)})
    assert str(e.value) == f"Config file '{path}' (from $PARALLEL_GATEWAY_CONFIG) does not exist."


def test_unreadable_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_settings(tmp_path, env={})
    assert str(e.value) == f"Config file '{tmp_path}' cannot be read: Is a directory."


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("[server\nport = 1\n", id="unclosed-table"),
        pytest.param("[server]\nport = \n", id="missing-value"),
        pytest.param("[server]\nport = 1\nport = 2\n", id="duplicate-key"),
        pytest.param("[server]\nhost = 'unterminated\n", id="unterminated-string"),
    ],
)
def test_invalid_toml(tmp_path: Path, text: str) -> None:
    with pytest.raises(tomllib.TOMLDecodeError) as toml_error:
        tomllib.loads(text)
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_settings(path, env={})
    assert str(e.value) == f"Config file '{path}' is not valid TOML: {toml_error.value}."


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    # tomllib raises UnicodeDecodeError, not TOMLDecodeError, for a file that is not UTF-8.
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[server]\nhost = "caf\xe9"\n')
    with pytest.raises(ConfigError) as e:
        load_settings(path, env={})
    message = str(e.value)
    assert message.startswith(f"Config file '{path}' is not valid TOML: ")
    assert "can't decode byte 0xe9" in message
    assert message.endswith(".")


PORT_RANGE = "Must be a port number from 0 to 65535."
POSITIVE = "Must be a finite number greater than 0."
NOT_NEGATIVE = "Must be a finite number, 0 or more."


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("[nope]\n", "Config has unknown section '[nope]'.", id="unknown-section"),
        pytest.param(
            "[Server]\nport = 1\n",
            "Config has unknown section '[Server]'. Did you mean 'server'?",
            id="section-case",
        ),
        pytest.param(
            "server = 1\n", "Config 'server' must be a table ([server]).", id="section-not-table"
        ),
        pytest.param(
            "port = 9000\n",
            "Config has key 'port' outside any [section]; it belongs under [server].",
            id="key-outside-a-section",
        ),
        pytest.param(
            "colour = 1\n", "Config has key 'colour' outside any [section].", id="stray-key"
        ),
        pytest.param(
            '[server]\nhots = "x"\n',
            "Config has unknown key 'server.hots'. Did you mean 'host'?",
            id="unknown-key",
        ),
        pytest.param(
            "[upstream]\napi_key = 'sk-123'\n",
            "Config has unknown key 'upstream.api_key'. Did you mean 'api_key_env'?",
            id="unknown-key-api-key",
        ),
        pytest.param(
            "[upstream]\nmax_connections = 100\n",
            "Config key 'upstream.max_connections' is now 'upstream.max_short_calls'.",
            id="renamed-key",
        ),
        pytest.param(
            "[server]\nport = 'abc'\n",
            "Config 'server.port' has value 'abc'. Not a valid int.",
            id="str-for-int",
        ),
        pytest.param(
            "[server]\nport = true\n",
            "Config 'server.port' has value True. Not a valid int.",
            id="bool-for-int",
        ),
        pytest.param(
            "[server]\nport = 8080.0\n",
            "Config 'server.port' has value 8080.0. Not a valid int.",
            id="float-for-int",
        ),
        pytest.param(
            "[log]\naccess_log = 1\n",
            "Config 'log.access_log' has value 1. Not a valid bool.",
            id="int-for-bool",
        ),
        pytest.param(
            "[log]\naccess_log = 'yes'\n",
            "Config 'log.access_log' has value 'yes'. Not a valid bool.",
            id="str-for-bool",
        ),
        pytest.param(
            "[upstream]\ntimeout = '5'\n",
            "Config 'upstream.timeout' has value '5'. Not a valid float.",
            id="str-for-float",
        ),
        pytest.param(
            "[upstream]\ntimeout = false\n",
            "Config 'upstream.timeout' has value False. Not a valid float.",
            id="bool-for-float",
        ),
        pytest.param(
            "[server]\nhost = 1\n",
            "Config 'server.host' has value 1. Not a valid str.",
            id="int-for-str",
        ),
        pytest.param(
            "[server]\nhost = ['a']\n",
            "Config 'server.host' has value ['a']. Not a valid str.",
            id="array-for-str",
        ),
        pytest.param(
            "[upstream]\nmax_attempts = 0\n",
            f"Config 'upstream.max_attempts' has value 0. {POSITIVE}",
            id="zero-int",
        ),
        pytest.param(
            "[cache]\nmemory_entries = -1\n",
            f"Config 'cache.memory_entries' has value -1. {POSITIVE}",
            id="negative-int",
        ),
        pytest.param(
            "[upstream]\ntimeout = -1.5\n",
            f"Config 'upstream.timeout' has value -1.5. {POSITIVE}",
            id="negative-float",
        ),
        pytest.param(
            "[upstream]\ntimeout = 0\n",
            f"Config 'upstream.timeout' has value 0.0. {POSITIVE}",
            id="zero-int-for-float",
        ),
        pytest.param(
            "[upstream]\nretry_after_cap = -1\n",
            f"Config 'upstream.retry_after_cap' has value -1.0. {NOT_NEGATIVE}",
            id="negative-retry-after-cap",
        ),
        pytest.param(
            "[upstream]\nbase_url = 'ftp://api.parallel.ai'\n",
            "Config 'upstream.base_url' has value 'ftp://api.parallel.ai'. "
            "Must start with http:// or https://.",
            id="base-url-ftp",
        ),
        pytest.param(
            "[upstream]\nbase_url = 'api.parallel.ai'\n",
            "Config 'upstream.base_url' has value 'api.parallel.ai'. "
            "Must start with http:// or https://.",
            id="base-url-no-scheme",
        ),
        pytest.param(
            "[upstream]\nbase_url = 'httpx://api.parallel.ai'\n",
            "Config 'upstream.base_url' has value 'httpx://api.parallel.ai'. "
            "Must start with http:// or https://.",
            id="base-url-scheme-prefix",
        ),
        pytest.param(
            "[upstream]\napi_key_env = ''\n",
            "Config 'upstream.api_key_env' has value ''. Must name an environment variable.",
            id="empty-api-key-env",
        ),
        pytest.param(
            "[storage]\ndatabase = ''\n",
            "Config 'storage.database' has value ''. Must be a file path or a postgresql:// URL.",
            id="empty-database",
        ),
        pytest.param(
            "[storage]\nsynchronous = 'off'\n",
            "Config 'storage.synchronous' has value 'off'. "
            "Must be one of ('normal', 'full', 'extra').",
            id="synchronous-off",
        ),
        pytest.param(
            "[storage]\nsynchronous = 'NORMAL'\n",
            "Config 'storage.synchronous' has value 'NORMAL'. "
            "Must be one of ('normal', 'full', 'extra').",
            id="synchronous-upper-case",
        ),
        pytest.param(
            "[log]\nlevel = 'verbose'\n",
            "Config 'log.level' has value 'verbose'. "
            "Must be one of ('debug', 'info', 'warning', 'error').",
            id="log-level-verbose",
        ),
        pytest.param(
            "[log]\nlevel = 'critical'\n",
            "Config 'log.level' has value 'critical'. "
            "Must be one of ('debug', 'info', 'warning', 'error').",
            id="log-level-critical",
        ),
        pytest.param(
            "[server]\nport = 65536\n",
            f"Config 'server.port' has value 65536. {PORT_RANGE}",
            id="port-too-high",
        ),
        pytest.param(
            "[server]\nport = -1\n",
            f"Config 'server.port' has value -1. {PORT_RANGE}",
            id="port-negative",
        ),
    ],
)
def test_bad_values(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_settings(write(tmp_path, text), env={})
    assert str(e.value) == message


POSITIVE_KEYS = [
    ("upstream", "connect_timeout"),
    ("upstream", "timeout"),
    ("upstream", "deadline"),
    ("upstream", "max_attempts"),
    ("upstream", "backoff_initial"),
    ("upstream", "backoff_max"),
    ("upstream", "max_short_calls"),
    ("upstream", "queue_timeout"),
    ("upstream", "long_poll_timeout"),
    ("upstream", "stream_idle_timeout"),
    ("upstream", "api_key_file_interval"),
    ("server", "max_body_bytes"),
    ("server", "shutdown_grace"),
    ("server", "header_timeout"),
    ("storage", "busy_timeout_ms"),
    ("cache", "memory_entries"),
    ("cache", "memory_bytes"),
    ("cache", "max_body_bytes"),
    ("cache", "sync_interval"),
    ("keys", "refresh_interval"),
]


@pytest.mark.parametrize(
    ("section", "key"), [pytest.param(s, k, id=f"{s}.{k}") for s, k in POSITIVE_KEYS]
)
def test_zero_is_rejected_where_positive_is_needed(tmp_path: Path, section: str, key: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_settings(write(tmp_path, f"[{section}]\n{key} = 0\n"), env={})
    is_float = isinstance(getattr(getattr(Settings(), section), key), float)
    shown = "0.0" if is_float else "0"
    assert str(e.value) == f"Config '{section}.{key}' has value {shown}. {POSITIVE}"


@pytest.mark.parametrize(
    ("text", "section", "key", "value"),
    [
        pytest.param("[server]\nport = 0\n", "server", "port", 0, id="port-0-ephemeral"),
        pytest.param("[server]\nport = 65535\n", "server", "port", 65535, id="port-65535"),
        pytest.param(
            "[upstream]\nretry_after_cap = 0\n", "upstream", "retry_after_cap", 0.0, id="cap-0"
        ),
        pytest.param(
            "[storage]\nsynchronous = 'extra'\n", "storage", "synchronous", "extra", id="extra"
        ),
        pytest.param("[log]\nlevel = 'warning'\n", "log", "level", "warning", id="warning"),
        pytest.param(
            "[upstream]\nbase_url = 'http://localhost:1'\n",
            "upstream",
            "base_url",
            "http://localhost:1",
            id="http-base-url",
        ),
        pytest.param(
            "[upstream]\nbase_url = 'HTTPS://api.parallel.ai'\n",
            "upstream",
            "base_url",
            "HTTPS://api.parallel.ai",
            id="upper-case-scheme",
        ),
        pytest.param(
            "[upstream]\nbase_url = 'Http://localhost:1'\n",
            "upstream",
            "base_url",
            "Http://localhost:1",
            id="mixed-case-scheme",
        ),
        pytest.param(
            "[upstream]\nretry_after_cap = 1e300\n",
            "upstream",
            "retry_after_cap",
            1e300,
            id="huge-finite-cap",
        ),
        pytest.param(
            "[upstream]\ntimeout = 5e-324\n", "upstream", "timeout", 5e-324, id="tiny-timeout"
        ),
    ],
)
def test_edge_values_accepted(
    tmp_path: Path, text: str, section: str, key: str, value: object
) -> None:
    settings = load_settings(write(tmp_path, text), env={})
    assert getattr(getattr(settings, section), key) == value


@pytest.mark.parametrize(
    ("section", "key"),
    [
        pytest.param("upstream", "connect_timeout", id="connect_timeout"),
        pytest.param("upstream", "timeout", id="timeout"),
        pytest.param("upstream", "deadline", id="deadline"),
        pytest.param("upstream", "backoff_initial", id="backoff_initial"),
        pytest.param("upstream", "backoff_max", id="backoff_max"),
        pytest.param("upstream", "retry_after_cap", id="retry_after_cap"),
        pytest.param("cache", "sync_interval", id="sync_interval"),
        pytest.param("keys", "refresh_interval", id="refresh_interval"),
    ],
)
def test_ints_are_accepted_for_floats(tmp_path: Path, section: str, key: str) -> None:
    settings = load_settings(write(tmp_path, f"[{section}]\n{key} = 7\n"), env={})
    value = getattr(getattr(settings, section), key)
    assert value == 7.0
    assert type(value) is float


FLOAT_KEYS = [
    ("upstream", "connect_timeout"),
    ("upstream", "timeout"),
    ("upstream", "deadline"),
    ("upstream", "backoff_initial"),
    ("upstream", "backoff_max"),
    ("upstream", "queue_timeout"),
    ("upstream", "long_poll_timeout"),
    ("upstream", "stream_idle_timeout"),
    ("upstream", "api_key_file_interval"),
    ("server", "header_timeout"),
    ("cache", "sync_interval"),
    ("keys", "refresh_interval"),
]


@pytest.mark.parametrize("value", ["nan", "+nan", "-nan", "inf", "+inf", "-inf"])
@pytest.mark.parametrize(
    ("section", "key"), [pytest.param(s, k, id=f"{s}.{k}") for s, k in FLOAT_KEYS]
)
def test_nan_and_inf_are_rejected_where_positive_is_needed(
    tmp_path: Path, section: str, key: str, value: str
) -> None:
    # `value <= 0` is False for nan, so a plain comparison would let it through.
    with pytest.raises(ConfigError) as e:
        load_settings(write(tmp_path, f"[{section}]\n{key} = {value}\n"), env={})
    shown = repr(float(value))
    assert str(e.value) == f"Config '{section}.{key}' has value {shown}. {POSITIVE}"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        pytest.param("nan", "nan", id="nan"),
        pytest.param("-nan", "nan", id="-nan"),
        pytest.param("inf", "inf", id="inf"),
        pytest.param("+inf", "inf", id="+inf"),
        pytest.param("-inf", "-inf", id="-inf"),
    ],
)
def test_nan_and_inf_are_rejected_for_retry_after_cap(
    tmp_path: Path, value: str, shown: str
) -> None:
    with pytest.raises(ConfigError) as e:
        load_settings(write(tmp_path, f"[upstream]\nretry_after_cap = {value}\n"), env={})
    assert str(e.value) == f"Config 'upstream.retry_after_cap' has value {shown}. {NOT_NEGATIVE}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "[upstream]\ntimeout = nan\n",
            f"Config 'upstream.timeout' has value nan. {POSITIVE}",
            id="timeout-nan",
        ),
        pytest.param(
            "[upstream]\ndeadline = inf\n",
            f"Config 'upstream.deadline' has value inf. {POSITIVE}",
            id="deadline-inf",
        ),
        pytest.param(
            "[upstream]\nretry_after_cap = nan\n",
            f"Config 'upstream.retry_after_cap' has value nan. {NOT_NEGATIVE}",
            id="cap-nan",
        ),
    ],
)
def test_nan_and_inf_examples(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_settings(write(tmp_path, text), env={})
    assert str(e.value) == message


HUGE_INT = "9" * 400  # TOML ints are unbounded in tomllib; this one is too big for a float


@pytest.mark.parametrize(
    ("section", "key"),
    [
        pytest.param("upstream", "max_attempts", id="upstream.max_attempts"),
        pytest.param("cache", "memory_bytes", id="cache.memory_bytes"),
    ],
)
def test_huge_int_does_not_escape_as_overflow_error(tmp_path: Path, section: str, key: str) -> None:
    # Accepting it or rejecting it with ConfigError are both fine; a traceback is not.
    with contextlib.suppress(ConfigError):
        load_settings(write(tmp_path, f"[{section}]\n{key} = {HUGE_INT}\n"), env={})


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        pytest.param(None, None, ServerSettings(host="10.0.0.1", port=9000), id="no-overrides"),
        pytest.param("192.0.2.10", None, ServerSettings(host="192.0.2.10", port=9000), id="host"),
        pytest.param(None, 8081, ServerSettings(host="10.0.0.1", port=8081), id="port"),
        pytest.param("::1", 0, ServerSettings(host="::1", port=0), id="both"),
    ],
)
def test_replace_server(host: str | None, port: int | None, expected: ServerSettings) -> None:
    base = Settings(
        server=ServerSettings(host="10.0.0.1", port=9000), log=LogSettings(level="debug")
    )
    replaced = replace_server(base, host, port)
    assert replaced.server == expected
    assert replaced.log == LogSettings(level="debug")
    assert replaced.upstream == base.upstream
    assert base.server == ServerSettings(host="10.0.0.1", port=9000)


@pytest.mark.parametrize("port", [pytest.param(p, id=str(p)) for p in (-1, 65536, 70000)])
def test_replace_server_rejects_a_bad_port(port: int) -> None:
    with pytest.raises(ConfigError) as e:
        replace_server(Settings(), None, port)
    assert str(e.value) == f"Option '--port' has value {port}. {PORT_RANGE}"


def test_replace_server_port_message() -> None:
    with pytest.raises(ConfigError) as e:
        replace_server(Settings(), "192.0.2.10", 70000)
    assert str(e.value) == (
        "Option '--port' has value 70000. Must be a port number from 0 to 65535."
    )


def test_isolation_mode_must_be_team_or_app(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[isolation]\nmode = "tenant"\n')
    with pytest.raises(ConfigError) as e:
        load_settings(path, env={})
    assert str(e.value) == (
        "Config 'isolation.mode' has value 'tenant'. Must be one of ('team', 'app')."
    )
    path.write_text('[isolation]\nmode = "app"\n')
    assert load_settings(path, env={}).isolation.mode == "app"


def test_a_postgresql_url_is_kept_as_it_is_not_taken_for_a_relative_path(tmp_path: Path) -> None:
    url = "postgresql://gateway@db.internal:5432/gateway?sslmode=require"
    text = f'[storage]\ndatabase = "{url}"\n'
    assert load_settings(write(tmp_path, text), env={}).storage.database == url


def test_the_database_from_the_environment_wins_over_the_file(tmp_path: Path) -> None:
    url = "postgresql://gateway:secret@db/gateway"
    config = write(tmp_path, '[storage]\ndatabase = "here.db"\n')
    assert load_settings(config, env={DATABASE_ENV: url}).storage.database == url
    assert load_settings(None, env={DATABASE_ENV: url}).storage.database == url
    assert load_settings(config, env={DATABASE_ENV: ""}).storage.database == str(
        tmp_path / "here.db"
    )


def test_a_relative_path_from_the_environment_is_the_current_directory_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    config = write(tmp_path / "elsewhere", '[storage]\ndatabase = "here.db"\n')
    settings = load_settings(config, env={DATABASE_ENV: "data/gw.db"})
    assert settings.storage.database == str(tmp_path / "data" / "gw.db")
