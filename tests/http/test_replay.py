"""Creates recorded and replayed (issue 16, step 2), with the official SDK against FakeParallel:
online through record and replay keys, then a real `serve --offline` with the fake stopped."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiohttp
import orjson
import pytest
from parallel import AsyncParallel, InternalServerError

from gateway.config import Settings
from gateway.keys.ratelimit import Limit
from gateway.storage.types import ReplayMode
from tests.conftest import capture_logs, config_for, run_cli
from tests.ops.test_ops import metrics_text, sample
from tests.passthrough_support import STORED, Harness, Start, error_of, with_keys
from tests.passthrough_support import start as start  # the fixture, with upstream
from tests.passthrough_support import upstream as upstream  # FakeParallel
from tests.serve_support import launch_serve

REPLAY = "parallel-gateway; hit; detail=replay"
RECORDED = "parallel-gateway; fwd=uri-miss; fwd-status=202; stored"
REPLAY_MISS = "parallel-gateway; fwd=uri-miss; detail=replay-miss"
CREATE = ("POST", "/v1/tasks/runs")
MCP_TOKEN = "Bearer mcp-token-5f0c1e-never-stored"


def posts(gw: Harness, start: int = 0) -> int:
    return sum(1 for sent in gw.sent(start) if sent == CREATE)


def create_body(question: str = "What is GDP?", **extra: object) -> bytes:
    return orjson.dumps({"input": question, "processor": "lite", **extra})


async def test_execute_and_create_retrieve_result_recorded_online_replay_offline(
    start: Start, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """Recorded online through a record key, exported with --app, imported into a fresh
    database, and replayed by a real `serve --offline` under a key of its own."""
    gw = await with_keys(start, make_settings(), {"rec": ReplayMode.RECORD})
    online = gw.sdk("rec")
    executed = [
        await online.task_run.execute(input="What is GDP?", processor="lite"),
        await online.task_run.execute(
            input={"country": "France"}, processor="base", metadata={"suite": "ci"}
        ),
    ]
    created = await online.task_run.create(input="Separately", processor="core")
    separate = (
        await online.task_run.retrieve(created.run_id),
        await online.task_run.result(created.run_id),
    )
    gw.fake.runs_complete = False  # polled: running, then completed
    polled = await online.task_run.create(input="Polled", processor="lite")
    assert (await online.task_run.retrieve(polled.run_id)).status == "running"
    gw.fake.runs[polled.run_id].status = "completed"
    polled_final = await online.task_run.retrieve(polled.run_id)
    polled_result = await online.task_run.result(polled.run_id)
    assert posts(gw) == 4
    before = len(gw.fake.exchanges)
    await gw.gateway.server.close()
    await gw.fake.stop()
    export = tmp_path / "rec.jsonl"
    exported = await run_cli(
        gw.gateway.config, "cache", "export", "--app", "rec", "-o", str(export)
    )
    assert (exported.code, exported.err) == (0, "Exported 4 runs.\n")
    fresh = make_settings(storage={"database": str(tmp_path / "ci" / "gw.db")})
    ci = config_for(tmp_path / "ci.toml", fresh)
    assert (await run_cli(ci, "cache", "import", "--create", str(export))).code == 0
    ci_key = (await run_cli(ci, "keys", "create", "ci")).out.decode().strip()

    proc, url = await launch_serve(ci, "--offline", env={})
    try:
        async with AsyncParallel(api_key=ci_key, base_url=url, max_retries=0) as offline:
            again = [
                await offline.task_run.execute(input="What is GDP?", processor="lite"),
                await offline.task_run.execute(
                    input={"country": "France"}, processor="base", metadata={"suite": "ci"}
                ),
            ]
            assert [r.output for r in again] == [r.output for r in executed]
            assert [r.run.run_id for r in again] == [r.run.run_id for r in executed]

            raw = await offline.task_run.with_raw_response.create(
                input="Separately", processor="core"
            )
            assert (raw.status_code, raw.headers["cache-status"]) == (202, REPLAY)
            replayed = await raw.parse()
            assert (replayed.run_id, replayed.status) == (created.run_id, "completed")
            assert await offline.task_run.retrieve(created.run_id) == separate[0]
            assert await offline.task_run.result(created.run_id) == separate[1]

            again_polled = await offline.task_run.create(input="Polled", processor="lite")
            assert again_polled.run_id == polled.run_id
            assert await offline.task_run.retrieve(polled.run_id) == polled_final
            assert await offline.task_run.result(polled.run_id) == polled_result

        # The SDK's own retries left on: x-should-retry: false makes it fail at once.
        async with AsyncParallel(api_key=ci_key, base_url=url) as retrying:
            with pytest.raises(InternalServerError) as caught:
                await retrying.task_run.execute(input="What is GNP?", processor="lite")
        async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as scraped:
            exposition = await scraped.text()
        miss = caught.value.response
        assert (miss.status_code, miss.headers["x-should-retry"]) == (503, "false")
        assert miss.headers["cache-status"] == REPLAY_MISS
        error = error_of(miss.content)
        # Most fields in common first (both lite creates share processor), then the newest.
        assert [(n["run_id"], n["differs_in"]) for n in error["detail"]["nearest"]] == [
            (polled.run_id, ["input"]),
            (executed[0].run.run_id, ["input"]),
            (created.run_id, ["input", "processor"]),
        ]
        looked_for = {"processor": "lite", "fields": ["input", "processor"]}
        assert error["detail"]["looked_for"] == looked_for
        recorded_on = error["detail"]["nearest"][0]["recorded_at"][:10]
        assert (
            f"Nearest recording ({polled.run_id}, {recorded_on}) differs in: input."
            in (error["message"])
        )
        assert error["message"].endswith("Not sent upstream: the gateway is offline.")
        assert "GNP" not in miss.text  # names, never values
        assert "GDP" not in miss.text
    finally:
        proc.terminate()
        await proc.wait()
    assert len(gw.fake.exchanges) == before
    # Every create reached the offline gateway once, and it sent nothing upstream.
    assert [
        sample(exposition, "gateway_replays_total", app="ci", outcome=outcome)
        for outcome in ("hit", "miss")
    ] == [4.0, 1.0]
    assert "\ngateway_upstream_requests_total{" not in exposition


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_replay_mode_answers_a_finished_recording_and_records_a_new_create(
    start: Start,
    make_settings: Callable[..., Settings],
    request: pytest.FixtureRequest,
    backend: str,
) -> None:
    database = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    settings = make_settings(storage={"database": database}) if database else make_settings()
    gw = await with_keys(start, settings, {"ci": ReplayMode.REPLAY})
    first = await gw.request("POST", "/v1/tasks/runs", app="ci", data=create_body())
    assert (first.status, first.headers["Cache-Status"]) == (202, RECORDED)
    run_id = orjson.loads(first.body)["run_id"]
    done = await gw.request("GET", f"/v1/tasks/runs/{run_id}/result", app="ci")
    assert (done.status, done.headers["Cache-Status"]) == (200, STORED)
    start_at = len(gw.fake.exchanges)

    # Another key order and whitespace: the same create.
    reordered = b'{ "processor": "lite",\n "input": "What is GDP?" }'
    second = await gw.request("POST", "/v1/tasks/runs", app="ci", data=reordered)
    assert (second.status, second.headers["Cache-Status"]) == (202, REPLAY)
    assert second.headers["Content-Type"] == "application/json"
    assert second.body == orjson.dumps(orjson.loads(done.body)["run"])
    assert gw.sent(start_at) == []

    new = await gw.request("POST", "/v1/tasks/runs", app="ci", data=create_body("Another"))
    assert (new.status, new.headers["Cache-Status"]) == (202, RECORDED)
    assert gw.sent(start_at) == [CREATE]
    new_id = orjson.loads(new.body)["run_id"]
    await gw.request("GET", f"/v1/tasks/runs/{new_id}", app="ci")  # its final run object
    third = await gw.request("POST", "/v1/tasks/runs", app="ci", data=create_body("Another"))
    assert (third.status, orjson.loads(third.body)["run_id"]) == (202, new_id)
    assert third.headers["Cache-Status"] == REPLAY
    assert posts(gw, start_at) == 1

    status, text = await metrics_text(gw.gateway)
    assert status == 200
    assert sample(text, "gateway_replays_total", app="ci", outcome="hit") == 2
    assert sample(text, "gateway_replays_total", app="ci", outcome="miss") == 2


async def test_a_recorded_run_that_never_finished_is_a_miss_that_says_so(
    start: Start, make_settings: Callable[..., Settings]
) -> None:
    modes = {"rec": ReplayMode.RECORD, "strict": ReplayMode.REPLAY_ONLY}
    gw = await with_keys(start, make_settings(), modes)
    recorded = await gw.request("POST", "/v1/tasks/runs", app="rec", data=create_body())
    run_id = orjson.loads(recorded.body)["run_id"]
    start_at = len(gw.fake.exchanges)

    miss = await gw.request("POST", "/v1/tasks/runs", app="strict", data=create_body())
    assert (miss.status, miss.headers["x-should-retry"]) == (503, "false")
    assert miss.headers["Cache-Status"] == REPLAY_MISS
    error = error_of(miss.body)
    assert error["message"] == (
        "No finished recording of this create to replay: looked for processor 'lite' with "
        f"fields input, processor. This create was recorded ({run_id}, "
        f"{error['detail']['unfinished'][0]['recorded_at'][:10]}), but that run never finished "
        "in the gateway's cache (neither its final run object nor its result is stored). Not "
        "sent upstream: the key of app 'strict' is replay-only."
    )
    assert [u["run_id"] for u in error["detail"]["unfinished"]] == [run_id]
    assert error["detail"]["nearest"] == []
    assert gw.sent(start_at) == []


async def test_isolation_app_matches_only_an_apps_own_recordings(
    start: Start, make_settings: Callable[..., Settings]
) -> None:
    modes = {"A": ReplayMode.REPLAY, "B": ReplayMode.REPLAY_ONLY}
    gw = await with_keys(start, make_settings(isolation={"mode": "app"}), modes)
    first = await gw.request("POST", "/v1/tasks/runs", app="A", data=create_body())
    run_id = orjson.loads(first.body)["run_id"]
    await gw.request("GET", f"/v1/tasks/runs/{run_id}/result", app="A")
    start_at = len(gw.fake.exchanges)

    own = await gw.request("POST", "/v1/tasks/runs", app="A", data=create_body())
    other = await gw.request("POST", "/v1/tasks/runs", app="B", data=create_body())
    assert (own.status, own.headers["Cache-Status"]) == (202, REPLAY)
    assert (other.status, other.headers["Cache-Status"]) == (503, REPLAY_MISS)
    assert "There is no other recording to compare it with." in error_of(other.body)["message"]
    assert gw.sent(start_at) == []


async def test_under_isolation_team_any_apps_recording_serves(
    start: Start, make_settings: Callable[..., Settings]
) -> None:
    modes = {"A": ReplayMode.RECORD, "B": ReplayMode.REPLAY_ONLY}
    gw = await with_keys(start, make_settings(), modes)
    first = await gw.request("POST", "/v1/tasks/runs", app="A", data=create_body())
    run_id = orjson.loads(first.body)["run_id"]
    await gw.request("GET", f"/v1/tasks/runs/{run_id}", app="A")
    start_at = len(gw.fake.exchanges)
    other = await gw.request("POST", "/v1/tasks/runs", app="B", data=create_body())
    assert (other.status, orjson.loads(other.body)["run_id"]) == (202, run_id)
    assert gw.sent(start_at) == []


async def test_every_check_of_a_forwarded_create_comes_before_a_replay(
    start: Start, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(server={"max_body_bytes": 200})
    modes = {"slow": ReplayMode.REPLAY, "big": ReplayMode.REPLAY_ONLY}
    gw = await with_keys(start, settings, modes, slow=Limit(rate=0.001, burst=2))
    first = await gw.request("POST", "/v1/tasks/runs", app="slow", data=create_body())
    run_id = orjson.loads(first.body)["run_id"]
    await gw.request("GET", f"/v1/tasks/runs/{run_id}", app="slow")
    start_at = len(gw.fake.exchanges)

    limited = await gw.request("POST", "/v1/tasks/runs", app="slow", data=create_body())
    assert (limited.status, limited.headers["Cache-Status"]) == (
        429,
        "parallel-gateway; fwd=bypass; detail=rate-limited",
    )
    large = await gw.request("POST", "/v1/tasks/runs", app="big", data=create_body("x" * 300))
    assert (large.status, error_of(large.body)["message"]) == (
        413,
        "Request body is larger than the gateway's limit of 200 bytes.",
    )
    assert gw.sent(start_at) == []


async def test_an_mcp_token_never_reaches_the_database_an_export_or_a_log(
    start: Start, make_settings: Callable[..., Settings]
) -> None:
    gw = await with_keys(start, make_settings(), {"rec": ReplayMode.RECORD})
    server = {"type": "url", "name": "docs", "url": "https://mcp.example"}
    body = create_body(mcp_servers=[{**server, "headers": {"authorization": MCP_TOKEN}}])
    with capture_logs() as logs:
        recorded = await gw.request("POST", "/v1/tasks/runs", app="rec", data=body)
        run_id = orjson.loads(recorded.body)["run_id"]
        await gw.request("GET", f"/v1/tasks/runs/{run_id}", app="rec")
        # Upstream's run input holds the token too; the gateway answers and keeps it scrubbed.
        inputs = [
            await gw.request("GET", f"/v1/tasks/runs/{run_id}/input", app="rec") for _ in "12"
        ]
    assert recorded.headers["Cache-Status"] == RECORDED
    assert MCP_TOKEN.encode() in gw.fake.last("POST", "/v1/tasks/runs").body  # sent upstream
    assert (gw.fake.inputs[run_id], gw.fake.count(run_id)) == (body, 1)  # upstream's has it
    scrubbed = body.replace(orjson.dumps(MCP_TOKEN), b'"<header value>"')
    assert [(i.status, i.body, i.headers["Cache-Status"]) for i in inputs] == [
        (200, scrubbed, STORED),
        (200, scrubbed, "parallel-gateway; hit"),
    ]
    assert any(line.get("event") == "replay.recorded" for line in logs)
    assert MCP_TOKEN not in repr(logs)
    exported = await run_cli(gw.gateway.config, "cache", "export")
    assert exported.code == 0
    assert MCP_TOKEN.encode() not in exported.out + exported.err.encode()
    await gw.gateway.server.close()  # the database closed: every page written
    database = Path(gw.settings.storage.database)
    files = sorted(database.parent.glob(database.name + "*"))
    raw = b"".join(f.read_bytes() for f in files)
    assert run_id.encode() in raw  # the recording is there
    assert MCP_TOKEN.encode() not in raw
    assert b"mcp-token" not in raw


async def test_a_replay_only_key_never_sends_a_create_upstream(
    start: Start, make_settings: Callable[..., Settings]
) -> None:
    gw = await with_keys(start, make_settings(), {"strict": ReplayMode.REPLAY_ONLY})
    client = gw.sdk("strict")
    with pytest.raises(InternalServerError) as caught:
        await client.task_run.create(input="Never recorded", processor="lite")
    error = error_of(caught.value.response.content)
    assert error["message"].endswith(
        "There is no other recording to compare it with. Not sent upstream: the key of app "
        "'strict' is replay-only."
    )
    not_json = await gw.request("POST", "/v1/tasks/runs", app="strict", data=b"[1]")
    assert (not_json.status, error_of(not_json.body)["message"]) == (
        503,
        "No recording of this create to replay: its body is not a JSON object, and the key of "
        "app 'strict' is replay-only.",
    )
    assert posts(gw) == 0


async def test_keys_update_replay_applies_while_serving(
    start: Start, make_settings: Callable[..., Settings]
) -> None:
    gw = await start(make_settings())
    off = await gw.request("POST", "/v1/tasks/runs", data=create_body())
    assert (off.status, off.headers["Cache-Status"]) == (202, "parallel-gateway; fwd=bypass")
    updated = await run_cli(gw.gateway.config, "keys", "update", "app", "--replay", "replay-only")
    assert (updated.code, updated.err) == (0, "Updated the key of app 'app'.\n")
    posted = posts(gw)

    async def replay_only() -> bool:
        reply = await gw.request("POST", "/v1/tasks/runs", data=create_body("Unrecorded"))
        return reply.status == 503

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 3.0  # keys.refresh_interval is 1 s
    while not await replay_only():
        assert loop.time() < deadline, "keys update --replay never applied"
        await asyncio.sleep(0.05)
    again = posts(gw)
    assert await replay_only()
    assert posts(gw) == again  # nothing more upstream once replay-only
    assert again >= posted
