"""Export format version 2 end to end: every kind (inputs, results, final runs, event streams)
exported, imported into a fresh database and served offline byte for byte, with the official
SDK against FakeParallel; an export holds no key and no header (issue 16, "Recordings travel")."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from gateway.config import Settings
from gateway.storage.types import ReplayMode
from tests.conftest import config_for, run_cli
from tests.fake_upstream import TEAM_KEY
from tests.passthrough_support import HIT, Harness, Start, with_keys
from tests.passthrough_support import start as start  # the fixture, with upstream
from tests.passthrough_support import upstream as upstream  # FakeParallel

BETA = "events-sse-2025-07-24"
ENVELOPE = {"version", "kind", "run_id", "stored_at"}
ANSWER = ENVELOPE | {"beta", "body"}
MEMBERS = {"input": ENVELOPE | {"input"}, "result": ANSWER, "run": ANSWER, "events": ANSWER}


async def answered(gw: Harness, run_id: str) -> dict[str, bytes]:
    """Every kind of the run asked for once through the gateway: what the app got, by path."""
    paths = [f"/v1/tasks/runs/{run_id}{tail}" for tail in ("/input", "/result", "", "/events")]
    bodies = {path: (await gw.request("GET", path)).body for path in paths}
    beta = f"/v1/tasks/runs/{run_id}/result"  # and the result under a beta set
    bodies[beta + "@beta"] = (await gw.request("GET", beta, headers={"parallel-beta": BETA})).body
    return bodies


@pytest.mark.parametrize("into", ["sqlite", "postgresql"])
async def test_every_kind_travels_byte_for_byte_and_replays_offline(
    start: Start,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    request: pytest.FixtureRequest,
    into: str,
) -> None:
    """Exported from SQLite, imported into a fresh SQLite file or PostgreSQL database."""
    online = await start()
    client = online.sdk()
    runs = [(await client.task_run.create(input=q, processor="lite")).run_id for q in "ab"]
    online.fake.runs[runs[1]].status = "failed"  # a failed run: its object and stream are final
    sent = {run_id: await answered(online, run_id) for run_id in runs}
    export = tmp_path / "runs.jsonl"
    exported = await run_cli(online.gateway.config, "cache", "export", "--output", str(export))
    assert (exported.code, exported.err) == (0, "Exported 2 runs.\n")

    lines = [orjson.loads(line) for line in export.read_bytes().splitlines()]
    kinds = [(line["kind"], line["run_id"], line.get("beta")) for line in lines]
    ordered = sorted(runs)
    assert kinds == [("input", run_id, None) for run_id in ordered] + [
        (kind, run_id, beta)
        for run_id in ordered
        for kind, beta in (("events", ""), ("result", ""), ("result", BETA), ("run", ""))
    ]
    # Nothing but the envelope and the entry's own members: no header, no key, anywhere.
    assert all(set(line) == MEMBERS[line["kind"]] and line["version"] == 2 for line in lines)
    decoded = b"".join(base64.b64decode(line["body"]) for line in lines if "body" in line)
    for secret in (TEAM_KEY, online.keys["app"], "Parallel/Python", "x-stainless", "pgw_"):
        assert secret.encode() not in export.read_bytes() + decoded

    target = str(tmp_path / "fresh" / "gw.db")
    if into == "postgresql":
        target = request.getfixturevalue("postgres_url")
    fresh = make_settings(storage={"database": target})
    config = config_for(tmp_path / "fresh.toml", fresh)
    imported = await run_cli(config, "cache", "import", "--create", str(export))
    new = f"Imported {len(lines)} new entries; 0 already cached; 0 lines rejected.\n"
    assert (imported.code, imported.err) == (0, new)
    again = await run_cli(config, "cache", "import", str(export))
    assert again.err == f"Imported 0 new entries; {len(lines)} already cached; 0 lines rejected.\n"

    await online.gateway.server.close()
    before = len(online.fake.exchanges)
    database = {"database": fresh.storage.database}
    offline = await start(make_settings(storage=database, upstream={"offline": True}), apps=("ci",))
    for run_id in runs:
        for path, body in sent[run_id].items():
            raw_path, _, beta = path.partition("@")
            headers = {"parallel-beta": BETA} if beta else {}
            reply = await offline.request("GET", raw_path, app="ci", headers=headers)
            assert (path, reply.status, reply.headers["Cache-Status"]) == (path, 200, HIT)
            assert reply.body == body
    stream = await offline.sdk("ci").task_run.events(runs[0])
    assert [event.type async for event in stream][-1] == "task_run.state"
    assert len(online.fake.exchanges) == before


async def test_an_export_of_named_runs_carries_every_kind_of_them(start: Start) -> None:
    gw = await start()
    client = gw.sdk()
    runs = sorted([(await client.task_run.create(input=q, processor="lite")).run_id for q in "ab"])
    for run_id in runs:
        await answered(gw, run_id)
    exported = await run_cli(gw.gateway.config, "cache", "export", runs[1], "trun_none")
    assert (exported.code, exported.err) == (
        1,
        "Exported 1 run.\nparallel-gateway: Not in the cache: trun_none\n",
    )
    lines = [orjson.loads(line) for line in exported.out.splitlines()]
    assert [(line["kind"], line["run_id"]) for line in lines] == [
        (kind, runs[1]) for kind in ("input", "events", "result", "result", "run")
    ]


async def test_create_recordings_travel_and_export_app_takes_one_apps(
    start: Start, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """A record key's creates, exported and imported, replay offline in a fresh database; an
    MCP server's header value is in no line; `--app` takes that app's recordings and runs."""
    modes = {"alpha": ReplayMode.RECORD, "beta": ReplayMode.RECORD}
    online = await with_keys(start, make_settings(), modes)
    token = "mcp-token-never-exported"
    mcp = [{"type": "url", "url": "https://mcp.example", "name": "m", "headers": {"a": token}}]

    def create(app: str) -> bytes:
        return orjson.dumps({"input": f"q {app}", "processor": "lite", "mcp_servers": mcp})

    runs = {}
    for app in modes:
        made = await online.request("POST", "/v1/tasks/runs", app=app, data=create(app))
        runs[app] = orjson.loads(made.body)["run_id"]
        await online.request("GET", f"/v1/tasks/runs/{runs[app]}/result", app=app)

    everything, alpha = tmp_path / "all.jsonl", tmp_path / "alpha.jsonl"
    config = online.gateway.config
    assert (await run_cli(config, "cache", "export", "-o", str(everything))).code == 0
    exported = await run_cli(config, "cache", "export", "--app", "alpha", "-o", str(alpha))
    assert (exported.code, exported.err) == (0, "Exported 1 run.\n")
    recorded = [
        (line["app"], line["run_id"])
        for line in map(orjson.loads, everything.read_bytes().splitlines())
        if line["kind"] == "recording"
    ]
    assert sorted(recorded) == sorted(runs.items())
    alpha_lines = [orjson.loads(line) for line in alpha.read_bytes().splitlines()]
    assert [(line["kind"], line["run_id"]) for line in alpha_lines] == [
        ("result", runs["alpha"]),
        ("recording", runs["alpha"]),
    ]
    assert set(alpha_lines[1]) == ENVELOPE | {"app", "match_hash", "fields"}
    for path in (everything, alpha):
        assert token.encode() not in path.read_bytes()

    fresh = make_settings(storage={"database": str(tmp_path / "ci" / "gw.db")})
    ci_config = config_for(tmp_path / "ci.toml", fresh)
    imported = await run_cli(ci_config, "cache", "import", "--create", str(alpha))
    assert imported.err == "Imported 2 new entries; 0 already cached; 0 lines rejected.\n"
    stats = orjson.loads((await run_cli(ci_config, "cache", "stats")).out)
    assert (stats["recordings"], stats["results"]["entries"]) == (1, 1)

    await online.gateway.server.close()
    before = len(online.fake.exchanges)
    database = {"database": fresh.storage.database}
    offline = await start(make_settings(storage=database, upstream={"offline": True}), apps=("ci",))
    replayed = await offline.request("POST", "/v1/tasks/runs", app="ci", data=create("alpha"))
    assert (replayed.status, orjson.loads(replayed.body)["run_id"]) == (202, runs["alpha"])
    assert replayed.headers["Cache-Status"] == "parallel-gateway; hit; detail=replay"
    other = await offline.request("POST", "/v1/tasks/runs", app="ci", data=create("beta"))
    assert other.status == 503  # beta's recording was not in alpha's export
    assert len(online.fake.exchanges) == before
