"""keys rotate, delete and update --allow, and usage errors, through the CLI as a subprocess."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.cli_support import KEY_LINE, TIMESTAMP, Result, Workspace, make_workspace, sha256

KEYS = "SELECT name, key_hash, prefix FROM app_keys ORDER BY name"
RETIRED = "SELECT key_hash, app, prefix, created_at, retires_at FROM retired_keys ORDER BY app"
STAMP = TIMESTAMP.pattern


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return make_workspace(tmp_path)


def at(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def test_rotate_prints_a_new_key_and_the_old_one_stops_at_once(ws: Workspace) -> None:
    old = ws.create("billing")
    ((created_at,),) = ws.rows("SELECT created_at FROM app_keys")

    result = ws.ok("keys", "rotate", "billing")

    assert KEY_LINE.fullmatch(result.out)
    new = result.out.strip()
    assert new != old
    assert result.err == "New key for app 'billing'; the old key no longer works.\n"
    assert ws.rows(KEYS) == [("billing", sha256(new), new[:12])]
    ((old_hash, app, prefix, old_created, retires_at),) = ws.rows(RETIRED)
    assert (old_hash, app, prefix, old_created) == (sha256(old), "billing", old[:12], created_at)
    ((rotated_at,),) = ws.rows("SELECT created_at FROM app_keys")
    assert retires_at == rotated_at  # no grace
    raw = ws.raw_bytes()
    for key in (old, new):
        assert key.encode() not in raw
        assert key[12:].encode() not in raw


def test_rotate_with_grace_keeps_the_old_key_until_then(ws: Workspace) -> None:
    old = ws.create("billing")

    result = ws.ok("keys", "rotate", "billing", "--grace", "2h")

    said = re.fullmatch(
        f"New key for app 'billing'; the old key works until ({STAMP})\\.\n", result.err
    )
    assert said is not None
    ((old_hash, _, _, _, retires_at),) = ws.rows(RETIRED)
    assert old_hash == sha256(old)
    assert retires_at == said[1]
    ((rotated_at,),) = ws.rows("SELECT created_at FROM app_keys")
    assert at(retires_at) - at(rotated_at) == timedelta(hours=2)


def test_rotate_twice_keeps_every_replaced_key_by_hash(ws: Workspace) -> None:
    first = ws.create("billing")
    second = ws.ok("keys", "rotate", "billing", "--grace", "1h").out.strip()
    third = ws.ok("keys", "rotate", "billing").out.strip()
    assert ws.rows(KEYS) == [("billing", sha256(third), third[:12])]
    assert sorted(row[0] for row in ws.rows(RETIRED)) == sorted([sha256(first), sha256(second)])


def test_rotate_a_revoked_app_makes_it_active_again_with_no_grace(ws: Workspace) -> None:
    first = ws.create("billing")
    old = ws.ok("keys", "rotate", "billing", "--grace", "8w").out.strip()
    ws.ok("keys", "revoke", "billing")
    ((revoked_at,),) = ws.rows("SELECT revoked_at FROM app_keys")
    assert ws.refused("keys", "rotate", "billing", "--grace", "1h") == (
        f"The key of app 'billing' was revoked at {revoked_at}: it gets no grace period; "
        "rotate without --grace."
    )
    assert [row[0] for row in ws.rows(RETIRED)] == [sha256(first)]

    new = ws.ok("keys", "rotate", "billing").out.strip()

    ((rotated_at,),) = ws.rows("SELECT created_at FROM app_keys")
    assert ws.rows("SELECT key_hash, revoked_at FROM app_keys") == [(sha256(new), None)]
    # The key revoked in its eight weeks' grace stays dead with the one revoked after it.
    assert sorted((row[0], row[4]) for row in ws.rows(RETIRED)) == sorted(
        [(sha256(first), rotated_at), (sha256(old), rotated_at)]
    )


def test_rotate_refuses_an_expired_app_and_an_unknown_one(ws: Workspace) -> None:
    ws.create("billing", "--expires", "1d")
    past = "2020-01-01T00:00:00.000000Z"
    ws.execute("UPDATE app_keys SET expires_at = ?", (past,))
    assert ws.refused("keys", "rotate", "billing") == (
        f"App 'billing' expired at {past}, and a new key would be expired too; give it a new "
        "expiry first (keys update billing --expires DURATION, or --no-expiry)."
    )
    assert ws.refused("keys", "rotate", "nobody") == "No app named 'nobody'."
    assert ws.refused("keys", "rotate", "billing", "--grace", "5") == (
        "Grace '5' is not valid: use a whole number and a unit, such as 90m, 12h, 30d or 8w "
        "(s, m, h, d, w)."
    )
    assert ws.rows(RETIRED) == []


def test_update_replaces_and_removes_the_allowlist(ws: Workspace) -> None:
    ws.create("billing", "--allow", "GET /v1/tasks/runs/*")
    rules = "SELECT allow FROM app_keys"

    result = ws.ok(
        "keys", "update", "billing", "--allow", "get /v1/tasks/runs/*/input",
        "--allow", "POST /v1/tasks/runs",
    )  # fmt: skip

    assert result.err == "Updated the key of app 'billing'.\n"
    assert ws.rows(rules) == [('["GET /v1/tasks/runs/*/input","POST /v1/tasks/runs"]',)]
    assert ws.refused("keys", "update", "billing", "--allow", "GET /v1/x", "--no-allow") == (
        "Give --allow or --no-allow, not both."
    )
    ws.ok("keys", "update", "billing", "--no-allow")
    assert ws.rows(rules) == [(None,)]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--allow", "GET"],
            "Rule 'GET' is not 'METHOD /path', e.g. 'GET /v1/tasks/runs/*'.",
        ),
        (
            ["--allow", "FETCH /v1/x"],
            "Rule 'FETCH /v1/x' has method 'FETCH'; use one of GET, POST, PUT, PATCH, DELETE, "
            "HEAD, OPTIONS, *.",
        ),
    ],
)
def test_update_checks_allow_rules_as_create_does(
    ws: Workspace, options: list[str], message: str
) -> None:
    ws.create("billing", "--allow", "GET /v1/tasks/runs/*")
    assert ws.refused("keys", "update", "billing", *options) == message
    assert ws.refused("keys", "create", "other", *options) == message
    assert ws.rows("SELECT name, allow FROM app_keys") == [("billing", '["GET /v1/tasks/runs/*"]')]


@pytest.mark.parametrize(
    "options",
    [["--rate", "5"], ["--no-expiry"], ["--max-open", "3"], ["--allow", "GET /v1/x"]],
)
def test_update_of_a_revoked_key_is_refused(ws: Workspace, options: list[str]) -> None:
    ws.create("billing")
    ws.ok("keys", "revoke", "billing")
    before = ws.rows("SELECT * FROM app_keys")
    ((revoked_at,),) = ws.rows("SELECT revoked_at FROM app_keys")

    assert ws.refused("keys", "update", "billing", *options) == (
        f"The key of app 'billing' was revoked at {revoked_at}; rotate it "
        "(`parallel-gateway keys rotate billing`) or create a new one."
    )
    assert ws.rows("SELECT * FROM app_keys") == before


def test_expires_0d_is_refused_as_zero(ws: Workspace) -> None:
    message = (
        "Expiry '0d' is not valid: 0 is not allowed, as the key would never work; give a count "
        "from 1 (or stop a key now with keys revoke)."
    )
    assert ws.refused("keys", "create", "billing", "--expires", "0d") == message
    ws.create("billing")
    assert ws.refused("keys", "update", "billing", "--expires", "0d") == message
    assert ws.rows("SELECT expires_at FROM app_keys") == [(None,)]


def test_create_after_revoke_names_delete_and_delete_frees_the_name(ws: Workspace) -> None:
    old = ws.create("temp-app")
    ws.ok("keys", "rotate", "temp-app", "--grace", "1h")
    ws.execute(
        "INSERT INTO run_access (id, app, how, at) VALUES ('trun_1', 'temp-app', 'created', 'x'),"
        " ('trun_2', 'temp-app', 'granted', 'y'), ('trun_1', 'other', 'granted', 'z')"
    )
    ws.ok("keys", "revoke", "temp-app")
    ((revoked_at,),) = ws.rows("SELECT revoked_at FROM app_keys")
    assert ws.refused("keys", "create", "temp-app") == (
        f"The name 'temp-app' is taken by a revoked app (revoked at {revoked_at}); "
        "`parallel-gateway keys delete temp-app --yes` frees it."
    )

    result = ws.ok("keys", "delete", "temp-app", "--yes")

    assert result == Result(
        0, "", "Deleted app 'temp-app' (2 keys, 2 run records); the name is free.\n"
    )
    assert ws.rows(KEYS) == []
    assert ws.rows(RETIRED) == []
    assert ws.rows("SELECT id, app FROM run_access") == [("trun_1", "other")]
    new = ws.create("temp-app")
    assert new != old
    assert ws.rows("SELECT name, key_hash, revoked_at FROM app_keys") == [
        ("temp-app", sha256(new), None)
    ]


def test_delete_refuses_without_yes_an_active_app_and_an_unknown_one(ws: Workspace) -> None:
    ws.create("billing")
    assert ws.refused("keys", "delete", "billing", "--yes") == (
        "App 'billing' is not revoked: revoke it first (`parallel-gateway keys revoke billing`), "
        "then delete it."
    )
    ws.ok("keys", "revoke", "billing")
    assert ws.refused("keys", "delete", "billing") == (
        "Deleting app 'billing' removes its keys and its run records for good; give --yes to do it."
    )
    assert ws.refused("keys", "delete", "nobody", "--yes") == "No app named 'nobody'."
    assert [row[0] for row in ws.rows(KEYS)] == ["billing"]


@pytest.mark.parametrize(
    "words",
    [
        ["serve"],
        ["migrate"],
        ["keys", "create", "x"],
        ["keys", "update", "x"],
        ["keys", "list"],
        ["keys", "rotate", "x"],
        ["keys", "revoke", "x"],
        ["keys", "delete", "x"],
        ["cache", "stats"],
        ["runs", "grant", "trun_1", "x"],
        ["runs", "list"],
        ["runs", "revoke", "trun_1", "x"],
    ],
    ids=" ".join,
)
def test_a_usage_error_prints_the_commands_own_usage(words: list[str], tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, create=False)
    result = ws.run_text(*words, "--bogus", "1")
    command = " ".join(["parallel-gateway", *(w for w in words if w not in ("x", "trun_1"))])
    assert (result.code, result.out) == (2, "")
    assert result.err.startswith(f"usage: {command} [-h]")
    assert result.err.endswith(f"\n{command}: error: unrecognized arguments: --bogus 1\n")
    assert not ws.database.exists()


def test_update_allow_without_a_rule_prints_update_usage(ws: Workspace) -> None:
    result = ws.run_text("keys", "update", "x", "--allow")
    assert (result.code, result.out) == (2, "")
    assert result.err.startswith("usage: parallel-gateway keys update [-h]")
    assert result.err.endswith(
        "parallel-gateway keys update: error: argument --allow: expected one argument\n"
    )
