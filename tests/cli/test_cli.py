"""The parallel-gateway command, run as a real subprocess against SQLite files in tmp_path."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from tests.cli_support import (
    APPLIED_ALL,
    CONFIG_ENV,
    MIGRATION_FILES,
    TIMESTAMP,
    Result,
    Workspace,
    cli,
    cli_text,
    make_workspace,
    sha256,
    write_config,
)

CONSOLE_SCRIPT = (str(Path(sys.executable).with_name("parallel-gateway")),)
TABLE_HEADER = [
    *("NAME", "PREFIX", "CREATED", "LAST USED", "STATUS", "EXPIRES", "RATE", "MAX OPEN"),
    *("REPLAY", "BUDGET (EST. USD)", "ALLOW"),
]


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return make_workspace(tmp_path)


def table(out: str) -> list[list[str]]:
    return [re.split(r" {2,}", line) for line in out.splitlines()]


def test_keys_create_prints_only_a_new_key(ws: Workspace) -> None:
    first = ws.create("alpha")
    second = ws.create("beta")
    assert len(first) == len(second) == 4 + 43
    assert first != second
    assert ws.rows("SELECT name, key_hash, prefix FROM app_keys ORDER BY name") == [
        ("alpha", sha256(first), first[:12]),
        ("beta", sha256(second), second[:12]),
    ]


def test_keys_create_with_a_taken_name_fails(ws: Workspace) -> None:
    key = ws.create("alpha")
    again = ws.run_text("keys", "create", "alpha")
    assert again == Result(
        1,
        "",
        "parallel-gateway: An app named 'alpha' already exists; `parallel-gateway keys rotate "
        "alpha` gives it a new key.\n",
    )
    assert ws.rows("SELECT name, key_hash FROM app_keys") == [("alpha", sha256(key))]


def test_keys_create_rejects_an_empty_name(ws: Workspace) -> None:
    result = ws.run_text("keys", "create", "")
    assert result == Result(
        1,
        "",
        "parallel-gateway: App name '' is not valid: use 1 to 64 printable characters.\n",
    )
    assert ws.rows("SELECT * FROM app_keys") == []


def test_database_holds_the_key_hash_never_the_key(ws: Workspace) -> None:
    keys = [ws.create("alpha"), ws.create("beta")]
    raw = ws.raw_bytes()
    for key in keys:
        assert key.encode() not in raw
        assert key[12:].encode() not in raw
        assert sha256(key).encode() in raw


def test_keys_list_shows_each_app_without_its_key(ws: Workspace) -> None:
    beta = ws.create("beta")
    alpha = ws.create("alpha")
    created = dict(ws.rows("SELECT name, created_at FROM app_keys"))

    result = ws.run_text("keys", "list")

    assert (result.code, result.err) == (0, "")
    assert table(result.out) == [
        TABLE_HEADER,
        [
            "alpha",
            alpha[:12],
            created["alpha"],
            "never",
            "active",
            "never",
            "none",
            "none",
            "off",
            "none",
            "all routes",
        ],
        [
            "beta",
            beta[:12],
            created["beta"],
            "never",
            "active",
            "never",
            "none",
            "none",
            "off",
            "none",
            "all routes",
        ],
    ]
    assert all(TIMESTAMP.fullmatch(stamp) for stamp in created.values())
    assert alpha not in result.out
    assert beta not in result.out


def test_keys_list_of_no_apps_is_the_header(ws: Workspace) -> None:
    assert ws.run_text("keys", "list") == Result(
        0,
        "NAME  PREFIX  CREATED  LAST USED  STATUS  EXPIRES  RATE  MAX OPEN  REPLAY  "
        "BUDGET (EST. USD)  ALLOW\n",
        "",
    )
    assert ws.run_text("keys", "list", "--json") == Result(0, "", "")


def test_keys_list_json_gives_one_object_per_line(ws: Workspace) -> None:
    alpha = ws.create("alpha")
    beta = ws.create("beta")
    assert ws.run_text("keys", "revoke", "beta").code == 0
    ((alpha_created,),) = ws.rows("SELECT created_at FROM app_keys WHERE name = 'alpha'")
    ((beta_created, beta_revoked),) = ws.rows(
        "SELECT created_at, revoked_at FROM app_keys WHERE name = 'beta'"
    )

    result = ws.run_text("keys", "list", "--json")

    assert (result.code, result.err) == (0, "")
    assert [json.loads(line) for line in result.out.splitlines()] == [
        {
            "name": "alpha",
            "prefix": alpha[:12],
            "created_at": alpha_created,
            "last_used_at": None,
            "revoked_at": None,
            "allow": None,
            "rate": None,
            "burst": None,
            "expires_at": None,
            "max_open": None,
            "replay": "off",
            "budget_usd": None,
            "budget_per": None,
            "status": "active",
            "spent_usd": None,
        },
        {
            "name": "beta",
            "prefix": beta[:12],
            "created_at": beta_created,
            "last_used_at": None,
            "revoked_at": beta_revoked,
            "allow": None,
            "rate": None,
            "burst": None,
            "expires_at": None,
            "max_open": None,
            "replay": "off",
            "budget_usd": None,
            "budget_per": None,
            "status": "revoked",
            "spent_usd": None,
        },
    ]
    assert alpha not in result.out
    assert beta not in result.out


def test_keys_revoke_marks_the_key_revoked(ws: Workspace) -> None:
    ws.create("alpha")
    ws.create("beta")

    result = ws.run_text("keys", "revoke", "alpha")

    assert result == Result(0, "", "Revoked the key of app 'alpha'.\n")
    ((revoked_at,),) = ws.rows("SELECT revoked_at FROM app_keys WHERE name = 'alpha'")
    assert TIMESTAMP.fullmatch(revoked_at)
    assert ws.rows("SELECT revoked_at FROM app_keys WHERE name = 'beta'") == [(None,)]
    statuses = [(row[0], row[4]) for row in table(ws.run_text("keys", "list").out)[1:]]
    assert statuses == [("alpha", "revoked"), ("beta", "active")]


def test_keys_revoke_twice_fails(ws: Workspace) -> None:
    ws.create("alpha")
    assert ws.run_text("keys", "revoke", "alpha").code == 0
    ((revoked_at,),) = ws.rows("SELECT revoked_at FROM app_keys")

    again = ws.run_text("keys", "revoke", "alpha")

    assert again == Result(
        1, "", f"parallel-gateway: The key of app 'alpha' was already revoked at {revoked_at}.\n"
    )
    assert ws.rows("SELECT revoked_at FROM app_keys") == [(revoked_at,)]


def test_keys_revoke_of_an_unknown_app_fails(ws: Workspace) -> None:
    ws.create("alpha")
    assert ws.run_text("keys", "revoke", "zeta") == Result(
        1, "", "parallel-gateway: No app named 'zeta'.\n"
    )
    assert ws.rows("SELECT name, revoked_at FROM app_keys") == [("alpha", None)]


def test_migrate_twice_succeeds_and_applies_once(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, create=False)
    latest = f"Database {ws.database} is at the latest schema.\n"
    assert ws.run_text("migrate") == Result(0, APPLIED_ALL + latest, "")
    applied = ws.rows("SELECT version, name, applied_at FROM schema_migrations")
    assert [row[1] for row in applied] == MIGRATION_FILES

    assert ws.run_text("migrate") == Result(0, latest, "")
    assert ws.rows("SELECT version, name, applied_at FROM schema_migrations") == applied


@pytest.mark.parametrize(
    "words",
    [
        [],
        ["serve"],
        ["migrate"],
        ["keys"],
        ["keys", "create"],
        ["keys", "list"],
        ["keys", "revoke"],
    ],
    ids=lambda words: " ".join(words) or "top",
)
def test_help(words: list[str], tmp_path: Path) -> None:
    result = cli_text(*words, "--help", cwd=tmp_path)
    assert (result.code, result.err) == (0, "")
    assert result.out.startswith(" ".join(["usage: parallel-gateway", *words]) + " [-h]")
    assert "--config PATH" in result.out
    assert list(tmp_path.iterdir()) == []


def test_console_script_and_module_are_the_same_command(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, create=False)
    module = cli_text("--help", cwd=ws.dir)
    script = cli_text("--help", cwd=ws.dir, command=CONSOLE_SCRIPT)
    assert module.code == script.code == 0
    assert script.out == module.out
    assert "serve" in script.out
    assert "migrate" in script.out
    assert "keys" in script.out

    migrated = cli_text("migrate", "--config", str(ws.config), cwd=ws.dir, command=CONSOLE_SCRIPT)
    assert migrated == Result(
        0, f"{APPLIED_ALL}Database {ws.database} is at the latest schema.\n", ""
    )


@pytest.mark.parametrize(
    ("command", "extra", "message"),
    [
        (
            "migrate",
            '[server]\nport = "abc"\n',
            "Config 'server.port' has value 'abc'. Not a valid int.",
        ),
        (
            "keys list",
            '[server]\nport = "abc"\n',
            "Config 'server.port' has value 'abc'. Not a valid int.",
        ),
        (
            "keys create alpha",
            "[server]\nport = 70000\n",
            "Config 'server.port' has value 70000. Must be a port number from 0 to 65535.",
        ),
        ("migrate", "[server]\nbogus = 1\n", "Config has unknown key 'server.bogus'."),
        ("keys revoke alpha", "[bogus]\nx = 1\n", "Config has unknown section '[bogus]'."),
        (
            "migrate",
            '[log]\nlevel = "loud"\n',
            "Config 'log.level' has value 'loud'. "
            "Must be one of ('debug', 'info', 'warning', 'error').",
        ),
    ],
)
def test_bad_config_exits_2_with_one_line(
    command: str, extra: str, message: str, tmp_path: Path
) -> None:
    database = tmp_path / "gw.db"
    config = write_config(tmp_path / "bad.toml", database, extra)

    result = cli_text(*command.split(), "--config", str(config), cwd=tmp_path)

    assert result == Result(2, "", f"parallel-gateway: {message}\n")
    assert not database.exists()


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    result = cli_text("migrate", "--config", str(missing), cwd=tmp_path)
    assert result == Result(2, "", f"parallel-gateway: Config file '{missing}' does not exist.\n")
    assert list(tmp_path.iterdir()) == []


def test_invalid_toml_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[storage\n", "utf-8")
    result = cli_text("migrate", "--config", str(config), cwd=tmp_path)
    assert (result.code, result.out) == (2, "")
    assert result.err.startswith(f"parallel-gateway: Config file '{config}' is not valid TOML: ")
    assert result.err.count("\n") == 1
    assert "Traceback" not in result.err


def test_config_env_var_is_used_without_config_flag(ws: Workspace) -> None:
    env = {CONFIG_ENV: str(ws.config)}

    created = cli_text("keys", "create", "alpha", cwd=ws.dir, env=env)

    assert (created.code, created.err) == (0, f"Database: {ws.database}\n")
    assert ws.rows("SELECT key_hash FROM app_keys") == [(sha256(created.out.strip()),)]
    assert sorted(p.name for p in ws.dir.iterdir()) == ["gateway.toml", "gw.db"]


def test_config_env_var_pointing_nowhere_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    result = cli_text("keys", "list", cwd=tmp_path, env={CONFIG_ENV: str(missing)})
    assert result == Result(
        2,
        "",
        f"parallel-gateway: Config file '{missing}' (from $PARALLEL_GATEWAY_CONFIG) does not "
        "exist.\n",
    )


def test_config_flag_wins_over_the_env_var(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, create=False)
    env = {CONFIG_ENV: str(ws.dir / "missing.toml")}
    result = cli_text("migrate", "--config", str(ws.config), cwd=ws.dir, env=env)
    assert result == Result(
        0, f"{APPLIED_ALL}Database {ws.database} is at the latest schema.\n", ""
    )


def test_config_is_taken_before_the_command_too(ws: Workspace) -> None:
    ws.create("alpha")
    result = cli_text("--config", str(ws.config), "keys", "list", "--json", cwd=ws.dir)
    assert result.code == 0
    assert [line.split(",")[0] for line in result.out.splitlines()] == ['{"name":"alpha"']


def test_unopenable_database_exits_with_one_line(tmp_path: Path) -> None:
    database = tmp_path / "a-directory"
    database.mkdir()
    config = write_config(tmp_path / "gateway.toml", database)

    result = cli_text("migrate", "--config", str(config), cwd=tmp_path)

    assert result.code == 1
    assert result.out == ""
    assert "Traceback" not in result.err
    assert result.err.count("\n") == 1
    assert result.err.startswith("parallel-gateway: ")
    assert str(database) in result.err


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("parallel-gateway ke", ["keys"]),
        ("parallel-gateway cache p", ["purge"]),
        ("parallel-gateway serve --of", ["--offline"]),
    ],
)
def test_tab_completion_completes_commands_and_options(
    tmp_path: Path, line: str, words: list[str]
) -> None:
    # What the shell's hook (parallel-gateway completion bash) asks of the command.
    answer = tmp_path / "completions"
    env = {
        "_ARGCOMPLETE": "1",
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
        "_ARGCOMPLETE_STDOUT_FILENAME": str(answer),
    }
    result = cli(cwd=tmp_path, env=env)
    assert (result.code, result.out) == (0, b"")
    assert [word.strip() for word in answer.read_text().split("\v")] == words
    assert list(tmp_path.iterdir()) == [answer]  # nothing else was run, no database made


def test_completion_prints_the_shells_hook(tmp_path: Path) -> None:
    result = cli("completion", "bash", cwd=tmp_path)
    assert result.code == 0
    assert b"complete " in result.out
    assert b"parallel-gateway" in result.out
    assert cli("completion", "tcsh", cwd=tmp_path).code == 2


@pytest.mark.parametrize(
    ("words", "writes"),
    [
        (("keys", "create", "beta"), True),
        (("keys", "update", "alpha", "--rate", "5"), True),
        (("keys", "rotate", "alpha"), True),
        (("keys", "revoke", "alpha"), True),
        (("runs", "grant", "trun_1", "alpha"), True),
        (("runs", "revoke", "trun_1", "alpha"), True),
        (("runs", "list"), False),
        (("cache", "purge", "--all", "--yes"), True),
        (("keys", "list"), False),
        (("cache", "stats"), False),
    ],
)
def test_a_command_that_writes_says_which_database_first(
    ws: Workspace, words: tuple[str, ...], writes: bool
) -> None:
    ws.create("alpha")
    result = cli_text(*words, "--config", str(ws.config), cwd=ws.dir)
    assert result.code == 0, result.err
    assert result.err.startswith(f"Database: {ws.database}\n") is writes


def test_a_relative_database_is_found_beside_its_config_from_anywhere(tmp_path: Path) -> None:
    home = make_workspace(tmp_path / "gateway")
    home.config.write_text('[storage]\ndatabase = "gw.db"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    made = cli_text("keys", "create", "alpha", "--config", "../gateway/gateway.toml", cwd=elsewhere)

    assert (made.code, made.err) == (0, f"Database: {home.database}\n")
    assert home.rows("SELECT name FROM app_keys") == [("alpha",)]
    assert list(elsewhere.iterdir()) == []


def test_no_database_is_made_by_accident(tmp_path: Path) -> None:
    env = {"XDG_DATA_HOME": str(tmp_path / "data")}
    database = tmp_path / "data" / "parallel-gateway" / "parallel-gateway.db"
    refused = cli_text("keys", "create", "alpha", cwd=tmp_path, env=env)
    assert refused == Result(
        1,
        "",
        f"parallel-gateway: No database at {database} (no config file: this user's default "
        "database). Start `serve` or run `migrate` with the gateway's config first, give "
        "--config, or pass --create to make a new one there.\n",
    )
    assert list(tmp_path.iterdir()) == []

    made = cli_text("keys", "create", "alpha", "--create", cwd=tmp_path, env=env)
    assert made.code == 0
    assert made.err == f"Database: {database} (no config file: this user's default database)\n"
    assert database.exists()
