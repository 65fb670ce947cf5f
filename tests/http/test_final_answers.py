"""Final answers are cached: a run's result and a finished run's object, served as hits, with
the official SDK against FakeParallel (issue 16, step 1)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
import pytest
from parallel import NotFoundError

from gateway.config import Settings
from gateway.keys.app_keys import create_key
from gateway.keys.ratelimit import Limit
from tests.conftest import run_cli
from tests.fake_upstream import Scripted
from tests.passthrough_support import BYPASS, HIT, MISS, STORED, Harness, Start, error_of
from tests.passthrough_support import start as start  # the fixture, with upstream
from tests.passthrough_support import upstream as upstream  # FakeParallel
from tests.storage_support import opened_storage

JSON = "application/json"
INPUT_RULE = "GET /v1/tasks/runs/*/input"
NOT_ALLOWED = "Forbidden: the key of app 'inputs' may not call GET {path}."


@pytest.fixture
async def gw(start: Start) -> Harness:
    return await start()


async def new_run(gw: Harness, app: str = "app") -> str:
    return (await gw.sdk(app).task_run.create(input="What is GDP?", processor="lite")).run_id


def gets(gw: Harness, start: int, path: str) -> int:
    """Upstream GETs of `path` (query aside) since the `start`th request."""
    return sum(1 for m, p in gw.sent(start) if m == "GET" and p.partition("?")[0] == path)


async def test_a_result_is_asked_of_upstream_once(gw: Harness) -> None:
    run_id = await new_run(gw)
    client = gw.sdk()
    first = await client.task_run.with_raw_response.result(run_id)
    second = await client.task_run.with_raw_response.result(run_id)

    assert (first.status_code, first.headers["cache-status"]) == (200, STORED)
    assert (second.status_code, second.headers["cache-status"]) == (200, HIT)
    assert second.headers["content-type"] == JSON
    assert await second.read() == await first.read()
    assert (await second.parse()).output.content == f"Answer for {run_id}"
    assert gw.sent() == [("POST", "/v1/tasks/runs"), ("GET", f"/v1/tasks/runs/{run_id}/result")]


async def test_a_completed_run_is_asked_of_upstream_once(gw: Harness) -> None:
    run_id = await new_run(gw)
    client = gw.sdk()
    first = await client.task_run.with_raw_response.retrieve(run_id)
    second = await client.task_run.with_raw_response.retrieve(run_id)

    assert [first.headers["cache-status"], second.headers["cache-status"]] == [STORED, HIT]
    assert second.headers["content-type"] == JSON
    assert await second.read() == await first.read()
    assert (await second.parse()).status == "completed"
    assert gets(gw, 0, f"/v1/tasks/runs/{run_id}") == 1


@pytest.mark.parametrize("status", ["failed", "cancelled"])
async def test_failed_and_cancelled_runs_are_final_too(gw: Harness, status: str) -> None:
    run_id = await new_run(gw)
    gw.fake.runs[run_id].status = status
    client = gw.sdk()
    assert (await client.task_run.retrieve(run_id)).status == status
    raw = await client.task_run.with_raw_response.retrieve(run_id)
    assert raw.headers["cache-status"] == HIT
    assert gets(gw, 0, f"/v1/tasks/runs/{run_id}") == 1


async def test_a_running_run_and_its_408_are_never_stored(gw: Harness) -> None:
    gw.fake.runs_complete = False
    run_id = await new_run(gw)
    path = f"/v1/tasks/runs/{run_id}"
    for _ in range(2):
        running = await gw.request("GET", path)
        assert (running.status, running.headers["Cache-Status"]) == (200, MISS)
        assert orjson.loads(running.body)["status"] == "running"
        still = await gw.request("GET", path + "/result?timeout=1")
        assert (still.status, still.headers["Cache-Status"]) == (408, f"{MISS}; fwd-status=408")
        assert error_of(still.body)["message"] == "Run is still active"

    gw.fake.runs[run_id].status = "completed"
    done = await gw.request("GET", path)
    again = await gw.request("GET", path)
    assert [done.headers["Cache-Status"], again.headers["Cache-Status"]] == [STORED, HIT]
    assert gets(gw, 0, path) == 3
    assert gets(gw, 0, path + "/result") == 2


async def test_a_404_is_never_stored(gw: Harness) -> None:
    client = gw.sdk()
    for _ in range(2):
        with pytest.raises(NotFoundError) as caught:
            await client.task_run.result("trun_missing")
        assert caught.value.response.headers["cache-status"] == f"{MISS}; fwd-status=404"
        with pytest.raises(NotFoundError):
            await client.task_run.retrieve("trun_missing")
    assert gets(gw, 0, "/v1/tasks/runs/trun_missing/result") == 2
    assert gets(gw, 0, "/v1/tasks/runs/trun_missing") == 2


async def test_a_200_that_is_not_json_is_relayed_and_not_stored(gw: Harness) -> None:
    run_id = await new_run(gw)
    path = f"/v1/tasks/runs/{run_id}/result"
    gw.fake.script.append(Scripted(200, b"<html>upstream hiccup</html>"))
    odd = await gw.request("GET", path)
    assert (odd.status, odd.body, odd.headers["Cache-Status"]) == (
        200,
        b"<html>upstream hiccup</html>",
        MISS,
    )
    assert (await gw.request("GET", path)).headers["Cache-Status"] == STORED
    assert gets(gw, 0, path) == 2


async def test_the_parallel_beta_set_is_part_of_the_key(gw: Harness) -> None:
    run_id = await new_run(gw)
    path = f"/v1/tasks/runs/{run_id}/result"
    asked = [
        ("b-2025, a-2025", STORED),
        ("a-2025,b-2025,a-2025", HIT),  # the same set: order, spaces and repeats aside
        (" b-2025 ,a-2025, ", HIT),
        ("a-2025", STORED),  # another set
        (None, STORED),  # none
        ("", HIT),  # an empty header is no set either
    ]
    for beta, status in asked:
        headers = {} if beta is None else {"parallel-beta": beta}
        reply = await gw.request("GET", path, headers=headers)
        assert (beta, reply.status, reply.headers["Cache-Status"]) == (beta, 200, status)
    assert gets(gw, 0, path) == 3
    betas = [e.headers.get("parallel-beta") for e in gw.fake.exchanges if e.method == "GET"]
    assert betas == ["b-2025, a-2025", "a-2025", None]  # forwarded as the app sent it


async def test_timeout_is_not_part_of_the_key_and_other_parameters_bypass(gw: Harness) -> None:
    run_id = await new_run(gw)
    path = f"/v1/tasks/runs/{run_id}/result"
    client = gw.sdk()
    first = await client.task_run.with_raw_response.result(run_id, api_timeout=5)
    second = await client.task_run.with_raw_response.result(run_id, api_timeout=60)
    third = await client.task_run.with_raw_response.result(run_id)
    assert [r.headers["cache-status"] for r in (first, second, third)] == [STORED, HIT, HIT]
    other = await gw.request("GET", path + "?timeout=5&view=full")
    run_query = await gw.request("GET", f"/v1/tasks/runs/{run_id}?timeout=5")
    assert (other.status, other.headers["Cache-Status"]) == (200, BYPASS)
    assert (run_query.status, run_query.headers["Cache-Status"]) == (200, BYPASS)
    assert gw.sent(1) == [
        ("GET", path + "?timeout=5"),
        ("GET", path + "?timeout=5&view=full"),
        ("GET", f"/v1/tasks/runs/{run_id}?timeout=5"),
    ]


@pytest.mark.parametrize("how", [["RUN"], ["--all", "--yes"]], ids=["run-id", "all"])
async def test_a_purge_sends_the_next_call_upstream(gw: Harness, how: list[str]) -> None:
    run_id = await new_run(gw)
    for path in (f"/v1/tasks/runs/{run_id}/result", f"/v1/tasks/runs/{run_id}"):
        assert (await gw.request("GET", path)).headers["Cache-Status"] == STORED
        assert (await gw.request("GET", path)).headers["Cache-Status"] == HIT

    args = [run_id if arg == "RUN" else arg for arg in how]
    purged = await run_cli(gw.gateway.config, "cache", "purge", *args)
    assert (purged.code, purged.err) == (0, "Purged 1 run.\n")

    for path in (f"/v1/tasks/runs/{run_id}/result", f"/v1/tasks/runs/{run_id}"):
        assert await status_once_purged(gw, path) == STORED
        assert gets(gw, 0, path) == 2


async def status_once_purged(gw: Harness, path: str) -> str:
    """Poll until the gateway stops serving `path` from memory (cache.sync_interval, 1 s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2.0
    while True:
        status = (await gw.request("GET", path)).headers["Cache-Status"]
        if status != HIT or loop.time() > deadline:
            return status
        await asyncio.sleep(0.05)


async def test_under_isolation_another_app_never_gets_a_cached_answer(
    start: Start, make_settings: Callable[..., Settings]
) -> None:
    gw = await start(make_settings(isolation={"mode": "app"}), apps=("A", "B"))
    run_id = await new_run(gw, "A")
    a, b = gw.sdk("A"), gw.sdk("B")
    await a.task_run.result(run_id)
    await a.task_run.retrieve(run_id)
    assert (await a.task_run.with_raw_response.result(run_id)).headers["cache-status"] == HIT
    before = len(gw.fake.exchanges)

    for call in (b.task_run.result, b.task_run.retrieve):
        with pytest.raises(NotFoundError) as caught:
            await call(run_id)
        assert caught.value.response.status_code == 404
        assert isinstance(caught.value.body, dict)
        assert caught.value.body["error"]["message"] == "Run id not found"
        assert caught.value.response.headers["cache-status"] == (f"{BYPASS}; detail=run-not-found")
    assert len(gw.fake.exchanges) == before


async def test_the_allowlist_and_the_rate_limit_come_before_a_cached_answer(
    start: Start, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    async with opened_storage(settings.storage) as storage:  # one call, then none for 1,000 s
        slow = await create_key(storage.app_keys, "slow", limit=Limit(rate=0.001, burst=1))
    gw = await start(settings, apps=("app", "inputs"), allow={"inputs": [INPUT_RULE]})
    gw.keys["slow"] = slow
    run_id = await new_run(gw)
    path = f"/v1/tasks/runs/{run_id}/result"
    assert (await gw.request("GET", path)).headers["Cache-Status"] == STORED

    refused = await gw.request("GET", path, app="inputs")
    message = NOT_ALLOWED.format(path=path)
    assert (refused.status, error_of(refused.body)["message"]) == (403, message)
    first = await gw.request("GET", path, app="slow")
    limited = await gw.request("GET", path, app="slow")
    assert (first.status, first.headers["Cache-Status"]) == (200, HIT)
    assert (limited.status, limited.headers["Cache-Status"]) == (
        429,
        f"{BYPASS}; detail=rate-limited",
    )
    assert gets(gw, 0, path) == 1


async def test_offline_serves_cached_final_answers_and_says_what_a_miss_lacks(
    start: Start, make_settings: Callable[..., Settings]
) -> None:
    online = await start()
    run_id = await new_run(online)
    stored = {
        path: (await online.request("GET", path)).body
        for path in (f"/v1/tasks/runs/{run_id}/result", f"/v1/tasks/runs/{run_id}")
    }
    await online.gateway.server.close()
    before = len(online.fake.exchanges)

    offline = await start(make_settings(upstream={"offline": True}), apps=("ci",))
    client = offline.sdk("ci")
    result = await client.task_run.with_raw_response.result(run_id, api_timeout=30)
    run = await client.task_run.with_raw_response.retrieve(run_id)
    assert [result.headers["cache-status"], run.headers["cache-status"]] == [HIT, HIT]
    assert [await result.read(), await run.read()] == list(stored.values())

    misses = {
        "/v1/tasks/runs/trun_unknown/result": "Run trun_unknown's result is not in the "
        "gateway's cache, and the gateway is offline.",
        "/v1/tasks/runs/trun_unknown": "Run trun_unknown is not in the gateway's cache in a "
        "final state, and the gateway is offline.",
    }
    for path, message in misses.items():
        miss = await offline.request("GET", path, app="ci")
        assert (miss.status, error_of(miss.body)["message"]) == (503, message)
        assert miss.headers["x-should-retry"] == "false"
        assert miss.headers["Cache-Status"] == f"{MISS}; detail=offline"
    assert len(online.fake.exchanges) == before


async def test_a_run_seen_unfinished_is_asked_of_upstream_before_the_store(start: Start) -> None:
    """A client polls a run while it works: each poll goes upstream, which knows first, without
    a database read before it. Once the store holds the answer (here from a second gateway on
    the same database, as a replica would), upstream is still asked while it answers, and the
    store serves the run if it does not."""
    first = await start()
    first.fake.runs_complete = False
    polled, other = await new_run(first), await new_run(first)
    for run_id in (polled, other):
        seen = await first.request("GET", f"/v1/tasks/runs/{run_id}")
        assert (seen.status, seen.headers["Cache-Status"]) == (200, MISS)
    replica = await start(first.settings, apps=("replica",))
    for run_id in (polled, other):
        first.fake.runs[run_id].status = "completed"
        done = await replica.request("GET", f"/v1/tasks/runs/{run_id}", app="replica")
        assert (done.status, done.headers["Cache-Status"]) == (200, STORED)

    sent = len(first.fake.exchanges)
    again = await first.request("GET", f"/v1/tasks/runs/{polled}")
    assert (again.status, orjson.loads(again.body)["status"]) == (200, "completed")
    assert gets(first, sent, f"/v1/tasks/runs/{polled}") == 1

    await first.fake.stop()  # upstream goes away: the stored answer still serves
    down = await first.request("GET", f"/v1/tasks/runs/{other}")
    assert (down.status, down.headers["Cache-Status"]) == (200, HIT)
    assert orjson.loads(down.body)["status"] == "completed"
