"""The same CLI against PostgreSQL: keys, runs, cache export and import, migrate, status of
the database named without its password."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli_support import KEY_LINE, cli, cli_text

PASSWORD = "s3cret-for-the-cli"
BODY = b'{"processor":"core","input":"caf\\u00e9 1.10",  "n":1e-7}'
RUN = "trun_" + "ef" * 16


def test_every_command_works_against_postgresql(tmp_path: Path, postgres_url: str) -> None:
    url = postgres_url.replace("gateway@", f"gateway:{PASSWORD}@")
    env = {"PARALLEL_GATEWAY_DATABASE": url}
    shown = postgres_url.replace("gateway@", "gateway:***@")

    migrated = cli_text("migrate", cwd=tmp_path, env=env)
    assert migrated.code == 0, migrated.err
    assert migrated.out.endswith(f"Database {shown} is at the latest schema.\n")

    made = cli_text("keys", "create", "billing", "--rate", "5", cwd=tmp_path, env=env)
    assert (made.code, made.err) == (0, f"Database: {shown}\n")
    assert KEY_LINE.fullmatch(made.out)
    listed = cli_text("keys", "list", "--json", cwd=tmp_path, env=env)
    assert [(k["name"], k["rate"]) for k in map(json.loads, listed.out.splitlines())] == [
        ("billing", 5.0)
    ]

    granted = cli_text("runs", "grant", RUN, "billing", cwd=tmp_path, env=env)
    assert granted.code == 0, granted.err
    runs = cli_text("runs", "list", "--json", cwd=tmp_path, env=env)
    assert [(r["id"], r["app"], r["how"]) for r in map(json.loads, runs.out.splitlines())] == [
        (RUN, "billing", "granted")
    ]

    line = b'{"version": 1, "run_id": "%s", "stored_at": "%s", "input":%s}\n' % (
        RUN.encode(),
        b"2026-11-22T07:00:00.000000Z",
        BODY,
    )
    imported = cli("cache", "import", "-", cwd=tmp_path, env=env, stdin=line)
    assert imported.code == 0, imported.err
    got = cli("cache", "get", RUN, cwd=tmp_path, env=env)
    assert (got.code, got.out) == (0, BODY + b"\n")
    exported = cli("cache", "export", cwd=tmp_path, env=env)
    assert exported.code == 0, exported.err
    assert BODY in exported.out

    revoked = cli_text("keys", "revoke", "billing", cwd=tmp_path, env=env)
    assert revoked.code == 0, revoked.err
    for result in (migrated, made, listed, granted, runs, got, exported, revoked):
        assert PASSWORD not in result.err
