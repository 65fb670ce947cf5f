"""runs grant, list and revoke, through the CLI as a subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_support import TIMESTAMP, Result, Workspace, make_workspace

ACCESS = "SELECT id, app, how FROM run_access ORDER BY app, id"


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = make_workspace(tmp_path)
    workspace.create("billing")
    workspace.create("search")
    return workspace


@pytest.mark.parametrize(
    "bad",
    ["bad/id", "trun_a%2Fb", "trun.1", "..", "", "trun 1", "trun_1?x", "tgrp_\u00e9"],
)
def test_grant_refuses_an_id_the_gateway_would_not_route(ws: Workspace, bad: str) -> None:
    assert ws.refused("runs", "grant", bad, "billing") == (
        f"Id {bad!r} is not valid: a run, task group, FindAll run or monitor id is one path "
        "segment of A-Z, a-z, 0-9, '_' and '-'."
    )
    assert ws.rows(ACCESS) == []


@pytest.mark.parametrize(
    "good", ["trun_9907962f83aa4d9d98fd7f4bf745d654", "tgrp_1", "findall_x-1", "m" * 200]
)
def test_grant_takes_run_group_findall_and_monitor_ids(ws: Workspace, good: str) -> None:
    assert ws.ok("runs", "grant", good, "billing").err == f"App 'billing' may now read {good}.\n"
    assert ws.rows(ACCESS) == [(good, "billing", "granted")]


def test_list_shows_each_record_and_filters_by_app(ws: Workspace) -> None:
    ws.execute(
        "INSERT INTO run_access (id, app, how, at) VALUES"
        " ('trun_2', 'search', 'created', '2026-01-01T00:00:00.000000Z'),"
        " ('trun_1', 'search', 'created', '2026-01-01T00:00:00.000000Z')"
    )
    ws.ok("runs", "grant", "trun_1", "billing")
    ((granted_at,),) = ws.rows("SELECT at FROM run_access WHERE app = 'billing'")
    assert TIMESTAMP.fullmatch(granted_at)

    assert ws.ok("runs", "list") == Result(
        0,
        "ID      APP      HOW      AT\n"
        f"trun_1  billing  granted  {granted_at}\n"
        "trun_1  search   created  2026-01-01T00:00:00.000000Z\n"
        "trun_2  search   created  2026-01-01T00:00:00.000000Z\n",
        "",
    )
    listed = ws.ok("runs", "list", "--app", "billing", "--json")
    assert [json.loads(line) for line in listed.out.splitlines()] == [
        {"id": "trun_1", "app": "billing", "how": "granted", "at": granted_at}
    ]
    assert ws.ok("runs", "list", "--app", "search").out.splitlines()[1:] == [
        "trun_1  search  created  2026-01-01T00:00:00.000000Z",
        "trun_2  search  created  2026-01-01T00:00:00.000000Z",
    ]
    assert ws.refused("runs", "list", "--app", "nobody") == "No app named 'nobody'."


def test_list_of_nothing_is_the_header(ws: Workspace) -> None:
    assert ws.ok("runs", "list") == Result(0, "ID  APP  HOW  AT\n", "")
    assert ws.ok("runs", "list", "--json") == Result(0, "", "")


def test_revoke_removes_a_grant_or_a_creators_record_and_says_which(ws: Workspace) -> None:
    ws.execute(
        "INSERT INTO run_access (id, app, how, at) VALUES ('trun_1', 'search', 'created', 'x'),"
        " ('bad/id', 'billing', 'granted', 'y')"  # granted before ids were checked
    )
    ws.ok("runs", "grant", "trun_1", "billing")

    assert ws.ok("runs", "revoke", "trun_1", "billing").err == (
        "App 'billing' may no longer read trun_1: its grant was removed.\n"
    )
    assert ws.ok("runs", "revoke", "trun_1", "search").err == (
        "App 'search' may no longer read trun_1: its record as the creator was removed.\n"
    )
    assert ws.ok("runs", "revoke", "bad/id", "billing").err == (
        "App 'billing' may no longer read bad/id: its grant was removed.\n"
    )
    assert ws.rows(ACCESS) == []
    assert ws.ok("runs", "revoke", "trun_1", "billing") == Result(
        0, "", "App 'billing' had no record of trun_1: nothing removed.\n"
    )
