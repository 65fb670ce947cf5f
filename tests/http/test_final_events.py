"""A finished run's event stream is cached byte for byte and served as a hit; a live stream is
relayed and never copied. The official SDK (and raw calls) against FakeParallel (issue 16)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import orjson
import pytest
from parallel import NotFoundError
from parallel.types import TaskRunEvent
from structlog.testing import capture_logs

from gateway.config import Settings
from tests.conftest import run_cli
from tests.fake_upstream import Scripted
from tests.http.test_final_answers import gets, new_run, status_once_purged
from tests.passthrough_support import BYPASS, HIT, MISS, STORED, Harness, Start, error_of
from tests.passthrough_support import start as start  # the fixture, with upstream
from tests.passthrough_support import upstream as upstream  # FakeParallel

SSE = "text/event-stream"
STATE = "task_run.state"
RUN_EVENTS = [STATE, "task_run.progress_msg.exec_status", "task_run.progress_stats", STATE]
CUT = b'event: task_run.state\ndata: {"type":"task_run.state","run":{"status":"running"}}\n\n'


@pytest.fixture
async def gw(start: Start) -> Harness:
    return await start()


async def finished_run(gw: Harness, app: str = "app") -> str:
    """A completed run whose result the gateway has stored: it is known finished."""
    run_id = await new_run(gw, app)
    raw = await gw.sdk(app).task_run.with_raw_response.result(run_id)
    assert raw.headers["cache-status"] == STORED
    return run_id


def events_path(run_id: str) -> str:
    return f"/v1/tasks/runs/{run_id}/events"


async def test_a_finished_runs_stream_is_asked_of_upstream_once(gw: Harness) -> None:
    run_id = await finished_run(gw)
    client = gw.sdk()
    bodies: list[bytes] = []
    statuses: list[object] = []
    for _ in range(2):
        async with client.task_run.with_streaming_response.events(run_id) as raw:
            statuses.append((raw.status_code, raw.headers["content-type"]))
            statuses.append(raw.headers["cache-status"])
            bodies.append(b"".join([chunk async for chunk in raw.iter_bytes()]))
    stream = await client.task_run.events(run_id)  # a third, parsed as the SDK parses it
    events = [event async for event in stream]
    types = [event.type for event in events]

    assert statuses == [(200, SSE), MISS, (200, SSE), HIT]
    assert bodies[0] == bodies[1]
    assert bodies[0].startswith(b"event: task_run.state\ndata: ")
    assert types == RUN_EVENTS
    assert isinstance(events[-1], TaskRunEvent)
    assert events[-1].run.status == "completed"
    assert gets(gw, 0, events_path(run_id)) == 1


async def test_a_failed_runs_stream_is_stored_too(gw: Harness) -> None:
    run_id = await new_run(gw)
    gw.fake.runs[run_id].status = "failed"
    assert (await gw.request("GET", f"/v1/tasks/runs/{run_id}")).headers["Cache-Status"] == STORED
    first = await gw.request("GET", events_path(run_id))
    second = await gw.request("GET", events_path(run_id))
    assert [first.headers["Cache-Status"], second.headers["Cache-Status"]] == [MISS, HIT]
    assert second.body == first.body
    assert b'"status":"failed"' in first.body.rsplit(b"\n\n", 2)[-2]
    assert gets(gw, 0, events_path(run_id)) == 1


async def test_a_live_stream_is_relayed_as_it_comes_and_never_copied(gw: Harness) -> None:
    gw.fake.runs_complete = False
    run_id = await new_run(gw)
    client = gw.sdk()
    gw.fake.hold_stream = asyncio.Event()
    stream = await client.task_run.events(run_id)
    first = await asyncio.wait_for(anext(stream), timeout=2)
    assert isinstance(first, TaskRunEvent)
    assert stream.response.headers["cache-status"] == MISS
    assert gw.fake.streams_finished == 0  # the app has its first event while upstream holds

    # The run finishes while its stream is open: the stream ends with a final state, but it
    # was a live stream when it started, so nothing of it was kept.
    gw.fake.runs[run_id].status = "completed"
    gw.fake.hold_stream.set()
    assert [event.type async for event in stream] == RUN_EVENTS[1:]
    again = await gw.request("GET", events_path(run_id))
    assert (again.status, again.headers["Cache-Status"]) == (200, MISS)
    assert gets(gw, 0, events_path(run_id)) == 2


async def test_a_stream_that_ends_before_a_final_state_is_not_stored(gw: Harness) -> None:
    run_id = await finished_run(gw)
    gw.fake.runs[run_id].status = "running"  # upstream's stream now ends on a running state
    ended = await gw.request("GET", events_path(run_id))
    assert (ended.status, ended.headers["Cache-Status"]) == (200, MISS)
    assert ended.body.count(b"event: task_run.state") == 2

    gw.fake.script.append(Scripted(200, CUT, {"Content-Type": SSE}))  # whole, with a length
    short = await gw.request("GET", events_path(run_id))
    assert (short.status, short.body, short.headers["Cache-Status"]) == (200, CUT, MISS)

    gw.fake.runs[run_id].status = "completed"
    stored = await gw.request("GET", events_path(run_id))
    hit = await gw.request("GET", events_path(run_id))
    assert [stored.headers["Cache-Status"], hit.headers["Cache-Status"]] == [MISS, HIT]
    assert hit.body == stored.body != ended.body
    assert gets(gw, 0, events_path(run_id)) == 3


async def test_a_stream_cut_midway_is_not_stored(
    start: Start, make_settings: Callable[..., Settings]
) -> None:
    gw = await start(make_settings(upstream={"stream_idle_timeout": 0.05}))
    run_id = await finished_run(gw)
    gw.fake.event_gap = 0.1  # upstream goes silent past the idle timeout: the stream is cut
    with capture_logs() as logs:
        stream = await gw.sdk().task_run.events(run_id)
        assert isinstance(await asyncio.wait_for(anext(stream), timeout=2), TaskRunEvent)
        with pytest.raises(httpx.TransportError):
            await asyncio.wait_for(anext(stream), timeout=2)
        await stream.close()
    assert "upstream.stream_broken" in [line["event"] for line in logs]

    gw.fake.event_gap = 0.0
    whole = await gw.request("GET", events_path(run_id))
    hit = await gw.request("GET", events_path(run_id))
    assert [whole.headers["Cache-Status"], hit.headers["Cache-Status"]] == [MISS, HIT]
    assert gets(gw, 0, events_path(run_id)) == 2


async def test_a_stream_over_max_body_bytes_is_relayed_whole_and_not_stored(
    start: Start, make_settings: Callable[..., Settings]
) -> None:
    gw = await start(make_settings(cache={"max_body_bytes": 1000}))
    run_id = await finished_run(gw)  # its result fits; its stream does not
    first = await gw.request("GET", events_path(run_id))
    second = await gw.request("GET", events_path(run_id))
    assert [len(first.body) > 1000, first.body.count(b"event: ")] == [True, 4]
    assert [len(second.body) > 1000, second.body.count(b"event: ")] == [True, 4]
    assert [first.headers["Cache-Status"], second.headers["Cache-Status"]] == [MISS, MISS]
    assert gets(gw, 0, events_path(run_id)) == 2


async def test_the_parallel_beta_set_is_part_of_the_key(gw: Harness) -> None:
    run_id = await finished_run(gw)
    asked = [
        ("events-sse-2025-07-24, b", MISS),
        ("b,events-sse-2025-07-24,b", HIT),  # the same set
        ("events-sse-2025-07-24", MISS),  # another set
        (None, MISS),
        ("", HIT),
    ]
    for beta, status in asked:
        headers = {} if beta is None else {"parallel-beta": beta}
        reply = await gw.request("GET", events_path(run_id), headers=headers)
        assert (beta, reply.status, reply.headers["Cache-Status"]) == (beta, 200, status)
        assert reply.headers["Content-Type"] == SSE
    assert gets(gw, 0, events_path(run_id)) == 3


async def test_a_query_parameter_bypasses_the_cache(gw: Harness) -> None:
    run_id = await finished_run(gw)
    for _ in range(2):
        reply = await gw.request("GET", events_path(run_id) + "?last_event_id=x")
        assert (reply.status, reply.headers["Cache-Status"]) == (200, BYPASS)
    assert gets(gw, 0, events_path(run_id)) == 2


async def test_a_purge_sends_the_next_stream_upstream_and_stats_count_streams(
    gw: Harness,
) -> None:
    run_id = await finished_run(gw)
    body = (await gw.request("GET", events_path(run_id))).body
    assert (await gw.request("GET", events_path(run_id))).headers["Cache-Status"] == HIT

    stats = await run_cli(gw.gateway.config, "cache", "stats")
    assert stats.code == 0
    assert b'"events":{"entries":1,"bytes":%d,' % len(body) in stats.out
    purged = await run_cli(gw.gateway.config, "cache", "purge", run_id)
    assert (purged.code, purged.err) == (0, "Purged 1 run.\n")
    assert await status_once_purged(gw, events_path(run_id)) == MISS
    assert gets(gw, 0, events_path(run_id)) == 2


async def test_offline_serves_a_stored_stream_and_says_what_a_miss_lacks(
    start: Start, make_settings: Callable[..., Settings]
) -> None:
    online = await start()
    run_id = await finished_run(online)
    stored = (await online.request("GET", events_path(run_id))).body
    await online.gateway.server.close()
    before = len(online.fake.exchanges)

    offline = await start(make_settings(upstream={"offline": True}), apps=("ci",))
    stream = await offline.sdk("ci").task_run.events(run_id)
    assert [event.type async for event in stream] == RUN_EVENTS
    hit = await offline.request("GET", events_path(run_id), app="ci")
    assert (hit.status, hit.headers["Cache-Status"], hit.body) == (200, HIT, stored)

    miss = await offline.request("GET", events_path("trun_unknown"), app="ci")
    message = (
        "Run trun_unknown's events are not in the gateway's cache, and the gateway is offline."
    )
    assert (miss.status, error_of(miss.body)["message"]) == (503, message)
    assert miss.headers["x-should-retry"] == "false"
    assert miss.headers["Cache-Status"] == f"{MISS}; detail=offline"
    assert len(online.fake.exchanges) == before


async def test_under_isolation_another_app_never_gets_a_stored_stream(
    start: Start, make_settings: Callable[..., Settings]
) -> None:
    gw = await start(make_settings(isolation={"mode": "app"}), apps=("A", "B"))
    run_id = await finished_run(gw, "A")
    await gw.request("GET", events_path(run_id), app="A")
    assert (await gw.request("GET", events_path(run_id), app="A")).headers["Cache-Status"] == HIT
    before = len(gw.fake.exchanges)

    with pytest.raises(NotFoundError) as caught:
        await gw.sdk("B").task_run.events(run_id)
    assert caught.value.response.status_code == 404
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["message"] == "Run id not found"
    assert caught.value.response.headers["cache-status"] == f"{BYPASS}; detail=run-not-found"
    assert len(gw.fake.exchanges) == before


async def test_a_stream_that_names_mcp_servers_is_relayed_and_never_stored(gw: Harness) -> None:
    """A task_run.state event may carry the run's input, and with it an app's MCP tokens."""
    run_id = await finished_run(gw)
    run = gw.fake.runs[run_id]
    server = {"type": "url", "name": "docs", "url": "https://mcp.example"}
    with_token = {**run.input, "mcp_servers": [{**server, "headers": {"x-token": "mcp-secret"}}]}
    event = orjson.dumps(run.state_event(input=with_token))
    stream = b"event: task_run.state\ndata: " + event + b"\n\n"
    gw.fake.script.extend([Scripted(200, stream, {"Content-Type": SSE})] * 2)
    answers = [await gw.request("GET", events_path(run_id)) for _ in "12"]
    assert [(a.status, a.body, a.headers["Cache-Status"]) for a in answers] == [
        (200, stream, MISS)
    ] * 2
    assert gets(gw, 0, events_path(run_id)) == 2
