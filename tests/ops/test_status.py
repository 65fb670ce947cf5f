"""`parallel-gateway status`: a real serve, real calls through it, then the command's screen."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
import orjson

from gateway.config import StorageSettings
from gateway.keys.app_keys import create_key
from gateway.ops.activity import Activity, totals_of
from tests.conftest import run_cli
from tests.fake_upstream import TEAM_KEY, FakeUpstream, task_run_input
from tests.serve_support import launch_serve
from tests.storage_support import opened_storage


def test_the_window_counts_what_happened_since_its_oldest_snapshot() -> None:
    def samples(hits: float, misses: float, errors: float) -> list[tuple[dict[str, str], float]]:
        route = {"route": "tasks.runs.input"}
        return [
            ({**route, "status": "200", "app": "a", "cache": "hit"}, hits),
            ({**route, "status": "200", "app": "a", "cache": "fwd=uri-miss; stored"}, misses),
            (
                {**route, "status": "404", "app": "a", "cache": "fwd=uri-miss; fwd-status=404"},
                errors,
            ),
            ({**route, "status": "401", "app": "", "cache": "detail=unauthenticated"}, 0),
        ]

    activity = Activity(now=1000.0)
    activity.snapshot(totals_of(samples(5, 2, 1)), now=1060.0)
    summary = activity.summary(totals_of(samples(9, 3, 1)), now=1090.0)
    assert summary["window_seconds"] == 90  # the first snapshot is the start's: all of it
    assert summary["apps"] == {"a": {"requests": 13, "hits": 9, "misses": 4, "errors": 1}}
    for _ in range(5):  # older snapshots fall out of the window
        activity.snapshot(totals_of(samples(5, 2, 1)), now=1100.0)
    summary = activity.summary(totals_of(samples(9, 3, 1)), now=1130.0)
    assert summary["apps"] == {"a": {"requests": 5, "hits": 4, "misses": 1, "errors": 0}}


async def test_status_shows_apps_upstream_and_the_last_errors_with_ref_ids(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    upstream.add("trun_status", task_run_input())
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[storage]\ndatabase = "{tmp_path / "gw.db"}"\n'
        f'[upstream]\nbase_url = "{upstream.base_url}"\n'
        '[metrics]\ntoken = "metrics-secret"\n'
    )
    async with opened_storage(StorageSettings(database=str(tmp_path / "gw.db"))) as storage:
        key = await create_key(storage.app_keys, "billing")
    proc, url = await launch_serve(config, env={"PARALLEL_API_KEY": TEAM_KEY})
    try:
        async with aiohttp.ClientSession(headers={"x-api-key": key}) as session:
            for path in ("trun_status", "trun_status", "trun_gone"):  # a miss, a hit, a 404
                async with session.get(f"{url}/v1/tasks/runs/{path}/input") as resp:
                    await resp.read()
            async with session.get(f"{url}/status", headers={"x-api-key": ""}) as resp:
                assert resp.status == 401  # behind metrics.token, as /metrics is
        as_json = await run_cli(config, "status", "--url", url, "--json")
        screen = await run_cli(config, "status", "--url", url)
    finally:
        proc.terminate()
        await proc.wait()

    assert (as_json.code, as_json.err) == (0, "")
    status = orjson.loads(as_json.out)
    assert status["ready"]["status"] == "ready"
    # (Calls with no valid key, such as the 401 above, are counted under "(no key)".)
    assert status["apps"]["billing"] == {"requests": 3, "hits": 1, "misses": 2, "errors": 1}
    [error] = status["upstream_errors"]
    assert (error["status"], error["route"], error["run_id"]) == (
        404,
        "tasks.runs.input",
        "trun_gone",
    )
    assert error["message"] == "Run id not found"
    assert (screen.code, screen.err) == (0, "")
    lines = screen.out.decode().splitlines()
    assert lines[0].startswith("Gateway: ready; database ok; last upstream contact ok at ")
    assert re.fullmatch(r"Requests since \S+ \(\d+ s\):", lines[2])
    assert lines[3] == "APP       REQUESTS  HITS  MISSES  ERRORS"
    assert "billing   3         1     2       1" in lines[4:6]
    assert lines[-2] == "Last upstream errors:"
    assert lines[-1].endswith(
        f"  404  tasks.runs.input trun_gone  ref_id {error['ref_id']}  Run id not found"
    )


async def test_status_of_no_gateway_says_where_it_looked(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("[server]\nport = 9\n")
    result = await asyncio.wait_for(run_cli(config, "status"), 20)
    assert (result.code, result.out) == (1, b"")
    assert result.err.startswith(
        "parallel-gateway: no gateway answered at http://127.0.0.1:9/status ("
    )
