"""Offline replay end to end: offline serving, export -> import -> SDK, warm, purge, no secrets."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from parallel import AsyncParallel, InternalServerError

from gateway.cache.admin import IMPORT_BATCH
from gateway.config import Settings
from tests.conftest import Gateway, StartGateway, config_for, run_cli
from tests.fake_upstream import TEAM_KEY, FakeUpstream, task_run_input

RUNS: dict[str, dict[str, object]] = {
    "trun_unicode": task_run_input(1, input={"city": "Zürich", "note": "日本語 ☃ \u2028"}),
    "trun_future": task_run_input(2, mcp_servers=[{"url": "x"}], brand_new_field={"a": [1]}),
    "trun_large": task_run_input(3, input="x" * 50_000),
    "trun_text": {"processor": "base", "input": "What was the GDP of France in 2023?"},
}


def rows(database: str) -> list[tuple[str, bytes, int, str]]:
    with sqlite3.connect(database) as conn:
        return conn.execute(
            "SELECT run_id, body, size, stored_at FROM run_inputs ORDER BY run_id"
        ).fetchall()


async def fill(gateway: Gateway, upstream: FakeUpstream) -> None:
    for run_id, body in RUNS.items():
        upstream.add(run_id, body)
        reply = await gateway.get(f"/v1/tasks/runs/{run_id}/input")
        assert reply.headers["Cache-Status"] == "parallel-gateway; fwd=uri-miss; stored"


async def test_offline_gateway_serves_hits_and_refuses_misses_without_upstream(
    start_gateway: StartGateway, make_settings: Callable[..., Settings], upstream: FakeUpstream
) -> None:
    settings = make_settings()
    online = await start_gateway(settings)
    await fill(online, upstream)
    await online.server.close()
    before = upstream.count()

    offline = await start_gateway(make_settings(upstream={"offline": True}), app="ci")
    hit = await offline.get("/v1/tasks/runs/trun_text/input")
    miss = await offline.get("/v1/tasks/runs/trun_unknown/input")
    retrieve = await offline.get("/v1/tasks/runs/trun_text")  # its input is cached; the run not
    health = await offline.get("/healthz", key=None)

    assert (hit.status, hit.headers["Cache-Status"]) == (200, "parallel-gateway; hit")
    assert orjson.loads(hit.body) == RUNS["trun_text"]
    assert miss.status == 503
    assert miss.headers["x-should-retry"] == "false"
    assert miss.headers["Cache-Status"] == "parallel-gateway; fwd=uri-miss; detail=offline"
    assert orjson.loads(miss.body)["error"]["message"] == (
        "Run trun_unknown is not in the gateway's cache, and the gateway is offline."
    )
    assert (retrieve.status, orjson.loads(retrieve.body)["error"]["message"]) == (
        503,
        "Run trun_text is not in the gateway's cache in a final state, and the gateway is offline.",
    )
    assert retrieve.headers["Cache-Status"] == "parallel-gateway; fwd=uri-miss; detail=offline"
    assert orjson.loads(health.body)["mode"] == "offline"
    assert upstream.count() == before


async def test_sdk_does_not_retry_an_offline_miss(
    start_gateway: StartGateway, make_settings: Callable[..., Settings], upstream: FakeUpstream
) -> None:
    gateway = await start_gateway(make_settings(upstream={"offline": True}))
    # The SDK's default is 2 retries on a 503; x-should-retry: false must stop them.
    async with AsyncParallel(api_key=gateway.app_key, base_url=gateway.url) as client:
        with pytest.raises(InternalServerError) as caught:
            await client.task_run.retrieve_input("trun_absent")
    assert caught.value.status_code == 503
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert upstream.count() == 0


async def test_export_import_round_trip_replays_identical_inputs_offline(
    start_gateway: StartGateway,
    make_settings: Callable[..., Settings],
    upstream: FakeUpstream,
    tmp_path: Path,
) -> None:
    source = await start_gateway()
    await fill(source, upstream)
    export = tmp_path / "runs.jsonl"
    exported = await run_cli(source.config, "cache", "export", "--output", str(export))
    assert (exported.code, exported.err) == (0, "Exported 4 runs.\n")

    fresh = make_settings(storage={"database": str(tmp_path / "fresh" / "gw.db")})
    config = config_for(tmp_path / "fresh.toml", fresh)
    imported = await run_cli(config, "cache", "import", "--create", str(export))
    assert (imported.code, imported.err) == (
        0,
        "Imported 4 new entries; 0 already cached; 0 lines rejected.\n",
    )
    requests_before = upstream.count()

    offline = await start_gateway(
        make_settings(storage={"database": fresh.storage.database}, upstream={"offline": True})
    )
    async with AsyncParallel(api_key=offline.app_key, base_url=offline.url) as client:
        for run_id, body in RUNS.items():
            raw = await client.task_run.with_raw_response.retrieve_input(run_id)
            assert raw.headers["cache-status"] == "parallel-gateway; hit"
            assert (await raw.parse()).to_dict() == body
            assert orjson.loads(await raw.read()) == body
    assert upstream.count() == requests_before


# Bodies as upstream sent them, which a parse and re-encode anywhere on the way would change.
EXACT: dict[str, bytes] = {
    "trun_bigint": b'{"processor":"core","input":{"account_id":123456789012345678901234567890}}',
    "trun_decimal": b'{"processor":"core","input":{"ratio":1.10,"tiny":1e-7,"e":2.5E+3}}',
    "trun_escapes": b'{"processor":"core","input":{"name":"caf\\u00e9 \\uD83D\\uDE00 \\u0041"}}',
    "trun_u2028": '{"processor":"core","input":{"raw":"a\u2028b","esc":"a\\u2028b"}}'.encode(),
    "trun_slash": b'{"processor":"core","input":"http:\\/\\/example.com\\/a \\\\ \\""}',
    "trun_spacing": b' {\t"processor" :\t"core" ,  "input" : {"a" :[ 1 ,\t{ } ] } }\t',
    "trun_lines": b'{\r\n  "processor": "core",\n  "input": {"n": 1.10}\n}\n',
}


async def test_every_byte_survives_export_import_and_offline_replay(
    start_gateway: StartGateway,
    make_settings: Callable[..., Settings],
    upstream: FakeUpstream,
    tmp_path: Path,
) -> None:
    source = await start_gateway()
    for run_id, body in EXACT.items():
        upstream.add(run_id, body)
        reply = await source.get(f"/v1/tasks/runs/{run_id}/input")
        assert (reply.status, reply.body) == (200, body)
    exported = await run_cli(source.config, "cache", "export")
    assert (exported.code, exported.err) == (0, "Exported 7 runs.\n")

    fresh = make_settings(storage={"database": str(tmp_path / "fresh" / "gw.db")})
    config = config_for(tmp_path / "fresh.toml", fresh)
    imported = await run_cli(config, "cache", "import", "--create", "-", stdin=exported.out)
    assert (imported.code, imported.err) == (
        0,
        "Imported 7 new entries; 0 already cached; 0 lines rejected.\n",
    )
    # An export line cannot hold a line break, so those (whitespace between tokens) go; every
    # other byte stays.
    expected = {run_id: b"".join(body.splitlines()) for run_id, body in EXACT.items()}
    for run_id, body in expected.items():
        got = await run_cli(config, "cache", "get", run_id)
        assert (got.code, got.out, got.err) == (0, body + b"\n", "")
    requests_before = upstream.count()

    offline = await start_gateway(
        make_settings(storage={"database": fresh.storage.database}, upstream={"offline": True})
    )
    async with AsyncParallel(api_key=offline.app_key, base_url=offline.url) as client:
        for run_id, body in expected.items():
            raw = await client.task_run.with_raw_response.retrieve_input(run_id)
            assert raw.headers["cache-status"] == "parallel-gateway; hit"
            assert await raw.read() == body
        bigint = await client.task_run.retrieve_input("trun_bigint")
    assert bigint.input == {"account_id": 123456789012345678901234567890}
    assert upstream.count() == requests_before


async def test_import_twice_changes_nothing(gateway: Gateway, upstream: FakeUpstream) -> None:
    await fill(gateway, upstream)
    export = await run_cli(gateway.config, "cache", "export")
    before = rows(gateway.settings.storage.database)

    again = await run_cli(gateway.config, "cache", "import", "-", stdin=export.out)

    assert (again.code, again.err) == (
        0,
        "Imported 0 new entries; 4 already cached; 0 lines rejected.\n",
    )
    assert rows(gateway.settings.storage.database) == before


async def test_import_reports_bad_lines_and_keeps_the_good_ones(
    gateway: Gateway, tmp_path: Path
) -> None:
    good = (
        b'{"version":1,"run_id":"trun_ok","stored_at":"2026-01-01T00:00:00Z",'
        b'"input":{"processor":"core","input":"hi"}}'
    )
    lines = [good, b"{not json", b'{"version":1,"run_id":"../x","stored_at":"x","input":{}}']
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    result = await run_cli(gateway.config, "cache", "import", str(path))

    assert result.code == 1
    assert result.err.splitlines() == [
        f"{path}:2: rejected: not JSON (unexpected character, expected a string key)",
        f"{path}:3: rejected: run_id '../x' is not 1 to 128 of A-Z, a-z, 0-9, '_', '-'",
        "Imported 1 new entry; 0 already cached; 2 lines rejected.",
    ]
    assert [r[0] for r in rows(gateway.settings.storage.database)] == ["trun_ok"]


async def test_export_never_contains_a_key(gateway: Gateway, upstream: FakeUpstream) -> None:
    await fill(gateway, upstream)
    export = await run_cli(gateway.config, "cache", "export")
    assert export.code == 0
    assert export.out.count(b"\n") == 4
    assert TEAM_KEY.encode() not in export.out
    assert gateway.app_key.encode() not in export.out
    assert b"pgw_" not in export.out
    assert b"x-api-key" not in export.out


async def test_warm_fills_the_cache_and_reports_failures_with_ref_ids(
    gateway: Gateway, upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.add("trun_w1", task_run_input(1))
    upstream.add("trun_w2", task_run_input(2))
    ids = tmp_path / "ids.txt"
    ids.write_text("trun_w2\n\ntrun_missing\n")

    result = await run_cli(
        gateway.config,
        "cache",
        "warm",
        "trun_w1",
        "--from",
        str(ids),
        env={"PARALLEL_API_KEY": TEAM_KEY},
    )

    assert result.code == 1
    reports = [orjson.loads(line) for line in result.out.splitlines()]
    assert [(r["run_id"], r["outcome"], r["status"]) for r in reports] == [
        ("trun_w1", "stored", 200),
        ("trun_w2", "stored", 200),
        ("trun_missing", "failed", 404),
    ]
    ref_id = reports[2]["ref_id"]
    assert ref_id == orjson.loads(upstream.last_error)["error"]["ref_id"]
    assert f"trun_missing: failed: 404 Run id not found (ref_id {ref_id})" in result.err
    assert [r[0] for r in rows(gateway.settings.storage.database)] == ["trun_w1", "trun_w2"]
    assert upstream.count() == 3

    # The gateway now answers them from the cache.
    reply = await gateway.get("/v1/tasks/runs/trun_w1/input")
    assert reply.headers["Cache-Status"] == "parallel-gateway; hit"
    assert upstream.count() == 3


async def wait_for_miss(gateway: Gateway, path: str) -> str:
    """Poll until the gateway stops serving `path` from memory; at most the promised 2 s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2.0
    while True:
        status = (await gateway.get(path)).headers["Cache-Status"]
        if status != "parallel-gateway; hit" or loop.time() > deadline:
            return status
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("how", [["trun_text"], ["--all", "--yes"]], ids=["run-id", "all"])
async def test_purge_while_serving_takes_effect_within_two_seconds(
    gateway: Gateway, upstream: FakeUpstream, how: list[str]
) -> None:
    await fill(gateway, upstream)
    path = "/v1/tasks/runs/trun_text/input"
    assert (await gateway.get(path)).headers["Cache-Status"] == "parallel-gateway; hit"

    purged = await run_cli(gateway.config, "cache", "purge", *how)
    assert purged.code == 0

    assert await wait_for_miss(gateway, path) == "parallel-gateway; fwd=uri-miss; stored"
    assert upstream.count("trun_text") == 2


async def test_a_killed_import_keeps_whole_batches_and_running_it_again_finishes_it(
    gateway: Gateway, tmp_path: Path
) -> None:
    count = 200_000
    run_ids = [f"trun_{n:07d}" for n in range(count)]
    path = tmp_path / "big.jsonl"
    with path.open("wb") as f:
        for run_id in run_ids:
            f.write(
                b'{"version":1,"run_id":"%s","stored_at":"2026-01-01T00:00:00Z",'
                b'"input":{"processor":"core","input":"%s"}}\n' % (run_id.encode(), b"y" * 400)
            )
    database = Path(gateway.settings.storage.database)
    wal = database.with_name(database.name + "-wal")
    wal_before = wal.stat().st_size if wal.exists() else 0
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "cache",
        "import",
        str(path),
        "--config",
        str(gateway.config),
        stderr=asyncio.subprocess.DEVNULL,
    )
    # Kill it once its batches have started landing in the WAL.
    for _ in range(1000):
        if wal.exists() and wal.stat().st_size > wal_before + 1_000_000:
            break
        await asyncio.sleep(0.01)
    else:
        proc.kill()
        raise AssertionError("the import never committed a batch: nothing was tested")
    assert proc.returncode is None  # still importing: the kill lands mid-import
    proc.kill()
    await proc.wait()

    with sqlite3.connect(database) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        landed = [r for (r,) in conn.execute("SELECT run_id FROM run_inputs ORDER BY run_id")]
        sizes = {size for (size,) in conn.execute("SELECT length(body) FROM run_inputs")}
    # Whole batches, in file order, each run whole; the rest of the file is not there yet.
    assert 0 < len(landed) < count
    assert len(landed) % IMPORT_BATCH == 0
    assert landed == run_ids[: len(landed)]
    assert sizes == {len(b'{"processor":"core","input":""}') + 400}

    done = await run_cli(gateway.config, "cache", "import", str(path))
    assert (done.code, done.out) == (0, b"")
    assert done.err == (
        f"Imported {count - len(landed)} new entries; {len(landed)} already cached; "
        "0 lines rejected.\n"
    )
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM run_inputs").fetchone()[0] == count


async def test_import_rejects_an_input_the_gateway_would_not_store(
    start_gateway: StartGateway, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    gateway = await start_gateway(make_settings(cache={"max_body_bytes": 100}))
    config = tmp_path / "small.toml"
    config.write_text(
        f'[storage]\ndatabase = "{gateway.settings.storage.database}"\n'
        "[cache]\nmax_body_bytes = 100\n"
    )
    big = orjson.dumps(
        {
            "version": 1,
            "run_id": "trun_big",
            "stored_at": "2026-01-01T00:00:00Z",
            "input": {"processor": "core", "input": "z" * 200},
        }
    )

    result = await run_cli(config, "cache", "import", "--create", "-", stdin=big + b"\n")

    assert result.code == 1
    assert result.err.splitlines()[0] == "-:1: rejected: input is 231 bytes, over 100"
    assert rows(gateway.settings.storage.database) == []
