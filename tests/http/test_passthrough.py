"""Pass-through, end to end: the official SDK, through the gateway, to FakeParallel."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from parallel import (
    APIStatusError,
    BadRequestError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
)
from parallel.types import (
    TaskGroupStatusEvent,
    TaskRun,
    TaskRunEvent,
    TaskRunProgressMessageEvent,
    TaskRunProgressStatsEvent,
    TaskRunTextOutput,
    TaskSpecParam,
)
from parallel.types.beta import FindAllCandidateMatchStatusEvent, FindAllRunStatusEvent

from gateway.config import Settings
from tests.conftest import capture_logs, config_for, eventually, run_cli
from tests.fake_parallel import FINDALL_BETA
from tests.fake_upstream import Scripted, error_json
from tests.passthrough_support import (
    BYPASS,
    HIT,
    MISS,
    STORED,
    UUID,
    Harness,
    Start,
    error_of,
)
from tests.passthrough_support import start as start  # the fixture, with upstream
from tests.passthrough_support import upstream as upstream  # FakeParallel

STATE = "task_run.state"
RUN_EVENTS = [STATE, "task_run.progress_msg.exec_status", "task_run.progress_stats", STATE]
SPEC: TaskSpecParam = {"output_schema": {"type": "text", "description": "GDP"}}
TOO_LARGE = "Request body is larger than the gateway's limit of 1000 bytes."
DOT_SEGMENTS = "Request validation error: the path may not hold . or .. segments."
LIMITED_RULES = ["GET /v1/tasks/runs/*/input", "POST /v1/tasks/runs"]


@pytest.fixture
async def gw(start: Start) -> Harness:
    return await start()


def access_lines(logs: Sequence[Mapping[str, Any]]) -> list[tuple[object, ...]]:
    return [
        (line["route"], line["method"], line["status"], line["cache"])
        for line in logs
        if line["event"] == "access"
    ]


# Task runs


async def test_task_run_create_retrieve_result_events(gw: Harness) -> None:
    client = gw.sdk()
    with capture_logs() as logs:
        raw = await client.task_run.with_raw_response.create(
            input={"country": "France"},
            processor="core",
            metadata={"team": "data"},
            task_spec=SPEC,
            betas=["events-sse-2025-07-24"],
        )
        created = await raw.parse()
        run_id = created.run_id
        raw_run = await client.task_run.with_raw_response.retrieve(run_id)
        run = await raw_run.parse()
        result = await client.task_run.result(run_id, api_timeout=5)
        raw_events = await client.task_run.with_raw_response.events(run_id)
        events = [event async for event in await raw_events.parse()]

    assert (raw.status_code, raw.headers["cache-status"]) == (202, BYPASS)
    assert raw.headers["content-type"] == "application/json"
    assert (created.status, created.processor, created.metadata) == (
        "queued",
        "core",
        {"team": "data"},
    )
    # A finished run and a result are final: stored on their way back.
    assert (raw_run.status_code, raw_run.headers["cache-status"]) == (200, STORED)
    assert isinstance(run, TaskRun)
    assert (run.run_id, run.status, run.is_active) == (run_id, "completed", False)
    assert result.run.status == "completed"
    assert isinstance(result.output, TaskRunTextOutput)
    assert result.output.content == f"Answer for {run_id}"

    # The run is known finished (its answers are stored): its stream is copied and stored too.
    assert (raw_events.status_code, raw_events.headers["cache-status"]) == (200, MISS)
    assert raw_events.headers["content-type"] == "text/event-stream"
    assert [e.type for e in events] == RUN_EVENTS
    first, message, stats, last = events
    assert isinstance(first, TaskRunEvent)
    assert (first.run.status, first.output) == ("running", None)
    assert isinstance(message, TaskRunProgressMessageEvent)
    assert message.message == "Starting research"
    assert isinstance(stats, TaskRunProgressStatsEvent)
    assert stats.progress_meter == 50.0
    assert isinstance(last, TaskRunEvent)
    assert isinstance(last.output, TaskRunTextOutput)
    assert last.output.content == f"Answer for {run_id}"

    assert gw.sent() == [
        ("POST", "/v1/tasks/runs"),
        ("GET", f"/v1/tasks/runs/{run_id}"),
        ("GET", f"/v1/tasks/runs/{run_id}/result?timeout=5"),
        ("GET", f"/v1/tasks/runs/{run_id}/events"),
    ]
    create = gw.fake.exchanges[0]
    assert create.json() == {
        "input": {"country": "France"},
        "processor": "core",
        "metadata": {"team": "data"},
        "task_spec": SPEC,
    }
    assert create.headers["parallel-beta"] == "events-sse-2025-07-24"
    assert create.headers["content-type"] == "application/json"
    assert gw.fake.exchanges[3].headers["accept"] == "text/event-stream"
    assert (gw.fake.streams_finished, gw.fake.streams_cancelled) == (1, 0)
    assert access_lines(logs) == [
        ("tasks.runs.create", "POST", 202, "fwd=bypass"),
        ("tasks.runs.retrieve", "GET", 200, "fwd=uri-miss; stored"),
        ("tasks.runs.result", "GET", 200, "fwd=uri-miss; stored"),
        ("tasks.runs.events", "GET", 200, "fwd=uri-miss"),
    ]
    assert {line["app"] for line in logs if line["event"] == "access"} == {"app"}


async def test_upstream_errors_pass_through_with_cache_status(gw: Harness) -> None:
    with capture_logs() as logs, pytest.raises(NotFoundError) as caught:
        await gw.sdk().task_run.retrieve("trun_missing")
    assert caught.value.body == orjson.loads(gw.fake.last_error)
    assert caught.value.response.headers["cache-status"] == f"{MISS}; fwd-status=404"
    assert gw.sent() == [("GET", "/v1/tasks/runs/trun_missing")]
    # The ref_id's line names the call it came from: the request id the app was given, too.
    [error] = [line for line in logs if line["event"] == "upstream.error"]
    assert error["ref_id"] == orjson.loads(gw.fake.last_error)["error"]["ref_id"]
    assert (error["request_id"], error["app"], error["route"]) == (
        caught.value.response.headers["x-gateway-request-id"],
        "app",
        "tasks.runs.retrieve",
    )


async def test_the_input_route_still_caches(gw: Harness) -> None:
    client = gw.sdk()
    created = await client.task_run.create(input="What is GDP?", processor="lite")
    with capture_logs() as logs:
        first = await client.task_run.with_raw_response.retrieve_input(created.run_id)
        second = await client.task_run.with_raw_response.retrieve_input(created.run_id)

    assert first.headers["cache-status"] == STORED
    assert second.headers["cache-status"] == HIT
    assert await first.read() == await second.read() == gw.fake.exchanges[0].body
    assert (await second.parse()).to_dict() == {"input": "What is GDP?", "processor": "lite"}
    assert gw.fake.count(created.run_id) == 1
    assert gw.sent() == [
        ("POST", "/v1/tasks/runs"),
        ("GET", f"/v1/tasks/runs/{created.run_id}/input"),
    ]
    assert access_lines(logs) == [
        ("tasks.runs.input", "GET", 200, "fwd=uri-miss; stored"),
        ("tasks.runs.input", "GET", 200, "hit"),
    ]


# Task groups, betas, and the other APIs


async def test_task_group_create_add_runs_get_runs(gw: Harness) -> None:
    client = gw.sdk()
    with capture_logs() as logs:
        group = await client.task_group.create(metadata={"batch": "one"})
        gid = group.task_group_id
        added = await client.task_group.add_runs(
            gid,
            inputs=[{"input": "a", "processor": "lite"}, {"input": {"n": 2}, "processor": "base"}],
            default_task_spec=SPEC,
            betas=["mcp-server-2025-07-17"],
        )
        again = await client.task_group.retrieve(gid)
        runs = await client.task_group.get_runs(gid, include_input=True, include_output=True)
        run_events = [event async for event in runs]
        group_events = [event async for event in await client.task_group.events(gid)]
        one = await client.task_group.retrieve_run(added.run_ids[1], task_group_id=gid)

    assert group.metadata == {"batch": "one"}
    assert len(added.run_ids) == 2
    assert again.status.task_run_status_counts == {"completed": 2}
    assert [e.run.run_id for e in run_events if isinstance(e, TaskRunEvent)] == added.run_ids
    assert len(run_events) == 2
    first = run_events[0]
    assert isinstance(first, TaskRunEvent)
    assert first.event_id == "cursor_1"
    assert first.input is not None
    assert first.input.to_dict() == {"task_spec": SPEC, "input": "a", "processor": "lite"}
    assert isinstance(first.output, TaskRunTextOutput)
    assert [e.type for e in group_events] == [
        "task_group_status",
        STATE,
        STATE,
        "task_group_status",
    ]
    assert isinstance(group_events[0], TaskGroupStatusEvent)
    assert (one.run_id, one.task_group_id, one.processor) == (added.run_ids[1], gid, "base")

    add = gw.fake.last("POST", f"/v1/tasks/groups/{gid}/runs")
    assert add.headers["parallel-beta"] == "mcp-server-2025-07-17"
    assert add.json() == {
        "inputs": [{"input": "a", "processor": "lite"}, {"input": {"n": 2}, "processor": "base"}],
        "default_task_spec": SPEC,
    }
    assert gw.sent() == [
        ("POST", "/v1/tasks/groups"),
        ("POST", f"/v1/tasks/groups/{gid}/runs"),
        ("GET", f"/v1/tasks/groups/{gid}"),
        ("GET", f"/v1/tasks/groups/{gid}/runs?include_input=true&include_output=true"),
        ("GET", f"/v1/tasks/groups/{gid}/events"),
        ("GET", f"/v1/tasks/groups/{gid}/runs/{added.run_ids[1]}"),
    ]
    assert gw.fake.exchanges[3].headers["accept"] == "text/event-stream"
    assert access_lines(logs) == [
        ("tasks.groups.create", "POST", 200, "fwd=bypass"),
        ("tasks.groups.add_runs", "POST", 200, "fwd=bypass"),
        ("tasks.groups.retrieve", "GET", 200, "fwd=bypass"),
        ("tasks.groups.runs", "GET", 200, "fwd=bypass"),
        ("tasks.groups.events", "GET", 200, "fwd=bypass"),
        ("tasks.groups.run", "GET", 200, "fwd=bypass"),
    ]


async def test_search_and_extract(gw: Harness) -> None:
    client = gw.sdk()
    with capture_logs() as logs:
        found = await client.with_raw_response.search(
            search_queries=["gdp france"], objective="GDP"
        )
        got = await client.extract(urls=["https://example.com/a", "https://invalid.example/b"])

    assert found.headers["cache-status"] == BYPASS
    results = (await found.parse()).results
    assert [(r.url, r.title) for r in results] == [
        ("https://example.com/search/0", "About gdp france")
    ]
    assert [(r.url, r.excerpts) for r in got.results] == [
        ("https://example.com/a", ["From https://example.com/a."])
    ]
    assert [(e.url, e.http_status_code) for e in got.errors] == [("https://invalid.example/b", 404)]
    assert gw.sent() == [("POST", "/v1/search"), ("POST", "/v1/extract")]
    assert gw.fake.exchanges[0].json() == {"search_queries": ["gdp france"], "objective": "GDP"}
    assert access_lines(logs) == [
        ("search", "POST", 200, "fwd=bypass"),
        ("extract", "POST", 200, "fwd=bypass"),
    ]


async def test_findall_keeps_its_beta_header(gw: Harness) -> None:
    client = gw.sdk()
    with capture_logs() as logs:
        run = await client.beta.findall.create(
            entity_type="companies",
            generator="core",
            match_conditions=[{"name": "saas", "description": "Sells software"}],
            match_limit=5,
            objective="SaaS companies",
            betas=["mcp-server-2025-07-17"],
        )
        fid = run.findall_id
        events = [event async for event in await client.beta.findall.events(fid)]
        result = await client.beta.findall.result(fid)

    assert (run.generator, run.status.status) == ("core", "queued")
    assert [e.type for e in events] == [
        "findall.status",
        "findall.candidate.generated",
        "findall.candidate.matched",
        "findall.status",
    ]
    assert isinstance(events[2], FindAllCandidateMatchStatusEvent)
    assert events[2].data.name == "Acme"
    assert isinstance(events[3], FindAllRunStatusEvent)
    assert events[3].data.status.status == "completed"
    assert [(c.name, c.match_status) for c in result.candidates] == [
        ("Acme", "matched"),
        ("Globex", "unmatched"),
    ]
    assert gw.sent() == [
        ("POST", "/v1beta/findall/runs"),
        ("GET", f"/v1beta/findall/runs/{fid}/events"),
        ("GET", f"/v1beta/findall/runs/{fid}/result"),
    ]
    betas = [e.headers["parallel-beta"] for e in gw.fake.exchanges]
    assert betas == [f"mcp-server-2025-07-17,{FINDALL_BETA}", FINDALL_BETA, FINDALL_BETA]
    assert access_lines(logs) == [
        ("findall.create", "POST", 200, "fwd=bypass"),
        ("findall.events", "GET", 200, "fwd=bypass"),
        ("findall.result", "GET", 200, "fwd=bypass"),
    ]


# Streaming


async def test_an_event_reaches_the_app_before_upstream_finishes(gw: Harness) -> None:
    client = gw.sdk()
    run = await client.task_run.create(input="q", processor="lite")
    gw.fake.hold_stream = asyncio.Event()
    stream = await client.task_run.events(run.run_id)

    first = await asyncio.wait_for(anext(stream), timeout=2)
    assert isinstance(first, TaskRunEvent)
    assert first.run.status == "running"
    assert (gw.fake.streams_finished, gw.fake.streams_cancelled) == (0, 0)

    gw.fake.hold_stream.set()
    assert [event.type async for event in stream] == RUN_EVENTS[1:]
    assert (gw.fake.streams_finished, gw.fake.streams_cancelled) == (1, 0)


async def test_an_app_that_closes_a_stream_cancels_the_upstream_stream(gw: Harness) -> None:
    client = gw.sdk()
    run = await client.task_run.create(input="q", processor="lite")
    gw.fake.hold_stream = asyncio.Event()
    stream = await client.task_run.events(run.run_id)
    await asyncio.wait_for(anext(stream), timeout=2)
    await stream.close()

    await eventually(lambda: gw.fake.streams_cancelled == 1)
    assert gw.fake.streams_finished == 0
    # The slot and connection are free again: the next call goes through.
    assert (await client.task_run.retrieve(run.run_id)).run_id == run.run_id


async def test_shutdown_ends_an_open_stream_cleanly(gw: Harness) -> None:
    client = gw.sdk()
    run = await client.task_run.create(input="q", processor="lite")
    gw.fake.hold_stream = asyncio.Event()
    stream = await client.task_run.events(run.run_id)
    assert isinstance(await asyncio.wait_for(anext(stream), timeout=2), TaskRunEvent)

    closing = asyncio.create_task(gw.gateway.server.close())  # SIGTERM's path: runner cleanup
    # The stream ends as a stream ends, with no error, after the events already sent.
    assert [event async for event in stream] == []
    await asyncio.wait_for(closing, timeout=5)
    await eventually(lambda: gw.fake.streams_cancelled == 1)


# Paths


async def test_raw_path_and_query_reach_upstream_byte_for_byte(gw: Harness) -> None:
    raw_path = "/v1/echo/a%20b/c%252F?q=%20x&r=a%2Fb&s=%7E"
    with capture_logs() as logs:
        reply = await gw.request("GET", raw_path)

    assert reply.status == 200
    assert orjson.loads(reply.body) == {"raw_path": raw_path}
    assert reply.headers["Cache-Status"] == BYPASS
    assert gw.sent() == [("GET", raw_path)]
    assert access_lines(logs) == [("v1.get", "GET", 200, "fwd=bypass")]


async def test_the_sdk_encodes_a_slash_in_an_id_and_the_gateway_refuses_it(gw: Harness) -> None:
    # No id holds a slash; an upstream that decodes %2F would route the rest as more path.
    with pytest.raises(BadRequestError) as caught:
        await gw.sdk().task_run.retrieve("a/b")
    assert caught.value.status_code == 400
    assert error_of(caught.value.response.content)["message"] == (
        "Request validation error: the path may not hold a backslash or an encoded / or \\ "
        "(%2F, %5C)."
    )
    assert gw.sent() == []


@pytest.mark.parametrize(
    ("method", "raw_path"),
    [
        ("GET", "/"),
        ("GET", "/v1"),
        ("GET", "/v1beta"),
        ("GET", "/v2/tasks/runs"),
        ("POST", "/v2/tasks/runs"),
        ("GET", "/V1/tasks/runs/trun_x"),
        ("GET", "/tasks/runs/trun_x"),
        ("GET", "/admin"),
    ],
)
async def test_paths_outside_v1_and_v1beta_are_404_and_not_forwarded(
    gw: Harness, method: str, raw_path: str
) -> None:
    reply = await gw.request(method, raw_path)
    assert reply.status == 404
    error = error_of(reply.body)
    assert error["message"] == f"No such route on this gateway: {method} {raw_path}"
    assert re.fullmatch(UUID, error["ref_id"])
    assert "Cache-Status" not in reply.headers
    assert gw.fake.started == []


@pytest.mark.parametrize(
    "raw_path",
    [
        "/v1/tasks/runs/x/../y",
        "/v1/tasks/runs/x/%2e%2e/y",
        "/v1/tasks/runs/x/%2E%2E/y",
        "/v1/tasks/runs/x/.%2e/y",
        "/v1/./search",
        "/v1/tasks/runs/%2e",
        "/v1beta/findall/runs/../../v1/tasks/runs/x",
        "/v1/tasks/runs/x/..",
    ],
)
async def test_dot_segments_are_400_and_not_forwarded(gw: Harness, raw_path: str) -> None:
    reply = await gw.request("GET", raw_path)
    assert reply.status == 400
    error = error_of(reply.body)
    assert error["message"] == DOT_SEGMENTS
    assert gw.fake.started == []


# Retries


async def test_a_post_is_never_retried(gw: Harness) -> None:
    refusal = error_json("Service overloaded", ref_id="ref-upstream-503")
    gw.fake.script.append(Scripted(503, refusal, {"Content-Type": "application/json"}))
    with pytest.raises(InternalServerError) as caught:
        await gw.sdk().task_run.create(input="q", processor="lite")
    assert caught.value.status_code == 503
    assert caught.value.body == orjson.loads(refusal)
    assert caught.value.response.headers["cache-status"] == BYPASS
    assert gw.sent() == [("POST", "/v1/tasks/runs")]

    gw.fake.script.append(Scripted(503, refusal, {"Content-Type": "application/json"}))
    reply = await gw.request(
        "POST",
        "/v1/tasks/runs",
        data=b'{"input": "q", "processor": "lite"}',
        headers={"Content-Type": "application/json"},
    )
    assert reply.status == 503
    assert reply.body == refusal
    assert reply.headers["Cache-Status"] == BYPASS
    assert reply.headers["Content-Type"] == "application/json"
    assert gw.sent() == [("POST", "/v1/tasks/runs")] * 2
    assert gw.fake.exchanges[1].body == b'{"input": "q", "processor": "lite"}'
    assert gw.fake.runs == {}


async def test_a_get_is_retried_before_any_byte_reaches_the_app(gw: Harness) -> None:
    client = gw.sdk()
    run = await client.task_run.create(input="q", processor="lite")
    gw.fake.script.append(Scripted(503, error_json("Service overloaded")))
    got = await client.task_run.with_raw_response.retrieve(run.run_id)
    assert (got.status_code, got.headers["cache-status"]) == (200, STORED)
    assert (await got.parse()).status == "completed"

    gw.fake.script.append(Scripted(502, error_json("Bad gateway")))
    events = [event.type async for event in await client.task_run.events(run.run_id)]
    assert events == RUN_EVENTS
    assert gw.sent() == [
        ("POST", "/v1/tasks/runs"),
        ("GET", f"/v1/tasks/runs/{run.run_id}"),
        ("GET", f"/v1/tasks/runs/{run.run_id}"),
        ("GET", f"/v1/tasks/runs/{run.run_id}/events"),
        ("GET", f"/v1/tasks/runs/{run.run_id}/events"),
    ]


# Limits


async def test_a_body_over_the_limit_with_content_length_is_413(
    start: Start, make_settings: Callable[..., Settings]
) -> None:
    gw = await start(make_settings(server={"max_body_bytes": 1000}))
    body = orjson.dumps({"input": "x" * 1000, "processor": "lite"})
    with capture_logs() as logs:
        reply = await gw.request(
            "POST", "/v1/tasks/runs", data=body, headers={"Content-Type": "application/json"}
        )
    assert reply.status == 413
    assert reply.headers["Content-Type"] == "application/json"
    error = error_of(reply.body)
    assert (error["message"], error["detail"]) == (TOO_LARGE, None)
    assert re.fullmatch(UUID, error["ref_id"])
    assert [line["ref_id"] for line in logs if line["event"] == "gateway.error"] == [
        error["ref_id"]
    ]

    with pytest.raises(APIStatusError) as caught:
        await gw.sdk().task_run.create(input="x" * 1000, processor="lite")
    assert caught.value.status_code == 413
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["message"] == TOO_LARGE
    assert gw.fake.started == []

    # Exactly at the limit is fine.
    at_limit = orjson.dumps({"input": "", "processor": "lite"})
    at_limit = at_limit.replace(b'""', b'"' + b"x" * (1000 - len(at_limit)) + b'"')
    assert len(at_limit) == 1000
    reply = await gw.request(
        "POST", "/v1/tasks/runs", data=at_limit, headers={"Content-Type": "application/json"}
    )
    assert reply.status == 202
    assert [e.body for e in gw.fake.exchanges] == [at_limit]


async def chunks(parts: list[bytes], pause: float = 0.0) -> AsyncIterator[bytes]:
    """A chunked request body (no Content-Length), with a pause after the first part."""
    for n, part in enumerate(parts):
        yield part
        if n == 0 and pause:
            await asyncio.sleep(pause)


OVER_LIMIT = [b'{"processor": "lite", "input": "', b"x" * 600, b"x" * 600, b'"}']


async def test_a_chunked_body_over_the_limit_is_413(
    start: Start, make_settings: Callable[..., Settings]
) -> None:
    gw = await start(make_settings(server={"max_body_bytes": 1000}))
    for pause in (0.0, 0.05):
        reply = await gw.request(
            "POST",
            "/v1/tasks/runs",
            data=chunks(OVER_LIMIT, pause),
            headers={"Content-Type": "application/json"},
        )
        assert reply.status == 413
        error = error_of(reply.body)
        assert error["message"] == TOO_LARGE
        assert re.fullmatch(UUID, error["ref_id"])
    # Upstream never got a whole request, so nothing was created.
    assert gw.fake.exchanges == []
    assert gw.fake.runs == {}

    small = [b'{"processor": "lite", ', b'"input": "q"}']
    reply = await gw.request(
        "POST", "/v1/tasks/runs", data=chunks(small), headers={"Content-Type": "application/json"}
    )
    assert reply.status == 202
    assert [e.body for e in gw.fake.exchanges] == [b"".join(small)]


async def test_a_chunked_body_over_the_limit_is_cut_and_logged_once(
    start: Start, make_settings: Callable[..., Settings]
) -> None:
    # By design the body streams (it is never held whole), so upstream sees the request start;
    # it is cut at the limit and never arrives whole, so nothing is created.
    gw = await start(make_settings(server={"max_body_bytes": 1000}))
    with capture_logs() as logs:
        reply = await gw.request(
            "POST",
            "/v1/tasks/runs",
            data=chunks(OVER_LIMIT, pause=0.05),
            headers={"Content-Type": "application/json"},
        )
    assert reply.status == 413
    assert gw.fake.exchanges == []
    assert [line["event"] for line in logs if line["log_level"] == "warning"] == ["gateway.error"]


async def test_a_silent_stream_is_cut_after_stream_idle_timeout(
    start: Start, make_settings: Callable[..., Settings]
) -> None:
    gw = await start(make_settings(upstream={"stream_idle_timeout": 0.05}))
    client = gw.sdk()
    run = await client.task_run.create(input="q", processor="lite")
    gw.fake.event_gap = 0.1
    stream = await client.task_run.events(run.run_id)
    assert isinstance(await asyncio.wait_for(anext(stream), timeout=2), TaskRunEvent)
    with capture_logs() as logs, pytest.raises(httpx.TransportError):
        await asyncio.wait_for(anext(stream), timeout=2)
    await stream.close()
    await eventually(lambda: gw.fake.streams_cancelled == 1)
    assert gw.fake.streams_finished == 0
    broken = [line for line in logs if line["event"] == "upstream.stream_broken"]
    assert [line["error"] for line in broken] == ["SocketTimeoutError"]


async def test_busy_short_call_slots_answer_503_with_retry_after(
    start: Start, make_settings: Callable[..., Settings]
) -> None:
    gw = await start(make_settings(upstream={"max_short_calls": 1, "queue_timeout": 0.2}))
    client = gw.sdk()
    run = await client.task_run.create(input="q", processor="lite")
    gw.fake.hold_retrieve = asyncio.Event()
    held = asyncio.create_task(client.task_run.retrieve(run.run_id))
    await eventually(lambda: len(gw.fake.started) == 2)

    reply = await gw.request("GET", f"/v1/tasks/runs/{run.run_id}")
    # The gateway's own failure (issue 14, one retry layer): the SDK waits, it does not retry.
    assert (reply.status, reply.headers["retry-after"], reply.headers["x-should-retry"]) == (
        503,
        "1",
        "false",
    )
    error = error_of(reply.body)
    assert error["message"] == (
        "The gateway already has 1 short calls open to Parallel (upstream.max_short_calls), and "
        "none ended within 0.2 s (upstream.queue_timeout); try again shortly."
    )
    with pytest.raises(InternalServerError) as caught:
        await client.search(search_queries=["x"])
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["message"] == error["message"]
    # A stream takes no short-call slot: it goes through while the slot is held.
    events = [event.type async for event in await client.task_run.events(run.run_id)]
    assert events == RUN_EVENTS
    assert gw.sent() == [
        ("POST", "/v1/tasks/runs"),
        ("GET", f"/v1/tasks/runs/{run.run_id}"),
        ("GET", f"/v1/tasks/runs/{run.run_id}/events"),
    ]

    gw.fake.hold_retrieve.set()
    assert (await held).status == "completed"


# Allowlists


async def test_an_allowlisted_key_reaches_only_its_routes(start: Start) -> None:
    gw = await start(apps=("app", "limited"), allow={"limited": LIMITED_RULES})
    limited = gw.sdk("limited")
    run = await limited.task_run.create(input="q", processor="lite")
    run_input = await limited.task_run.retrieve_input(run.run_id)
    assert run_input.to_dict() == {"input": "q", "processor": "lite"}
    before = len(gw.fake.exchanges)

    with pytest.raises(PermissionDeniedError) as caught:
        await limited.task_run.retrieve(run.run_id)
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["message"] == (
        f"Forbidden: the key of app 'limited' may not call GET /v1/tasks/runs/{run.run_id}."
    )
    with pytest.raises(PermissionDeniedError):
        await limited.search(search_queries=["x"])
    reply = await gw.request("POST", "/v1/search", app="limited", data=b'{"search_queries":["x"]}')
    assert reply.status == 403
    error = error_of(reply.body)
    assert error["message"] == "Forbidden: the key of app 'limited' may not call POST /v1/search."
    assert re.fullmatch(UUID, error["ref_id"])
    assert gw.fake.started[before:] == []

    # The unrestricted key is not affected.
    assert (await gw.sdk().task_run.retrieve(run.run_id)).run_id == run.run_id


async def test_keys_create_allow_from_the_cli(
    start: Start, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings()
    config = config_for(tmp_path / "cli.toml", settings)
    args = ["keys", "create", "limited", "--create"]  # before the gateway has made it
    for rule in LIMITED_RULES:
        args += ["--allow", rule]
    made = await run_cli(config, *args)
    assert (made.code, made.err) == (0, "")
    gw = await start(settings)
    gw.keys["limited"] = made.out.decode().strip()

    listed = await run_cli(config, "keys", "list")
    assert listed.code == 0
    rows = {line.split()[0]: line for line in listed.out.decode().splitlines()[1:]}
    assert rows["limited"].endswith("GET /v1/tasks/runs/*/input, POST /v1/tasks/runs")
    assert rows["app"].endswith("all routes")
    as_json = await run_cli(config, "keys", "list", "--json")
    allows = {
        entry["name"]: entry["allow"]
        for entry in map(orjson.loads, as_json.out.decode().splitlines())
    }
    assert allows == {"app": None, "limited": LIMITED_RULES}

    limited = gw.sdk("limited")
    run = await limited.task_run.create(input="q", processor="lite")
    assert (await limited.task_run.retrieve_input(run.run_id)).input == "q"
    with pytest.raises(PermissionDeniedError):
        await limited.task_run.retrieve(run.run_id)
    with pytest.raises(PermissionDeniedError):
        await limited.search(search_queries=["x"])
    assert gw.sent() == [("POST", "/v1/tasks/runs"), ("GET", f"/v1/tasks/runs/{run.run_id}/input")]


async def test_a_stream_names_its_request_id_as_its_access_line_does(gw: Harness) -> None:
    client = gw.sdk()
    run = await client.task_run.create(input="q", processor="lite")
    with capture_logs() as logs:
        raw = await client.task_run.with_raw_response.events(run.run_id)
        events = [event async for event in await raw.parse()]
    assert len(events) == len(RUN_EVENTS)
    access = [line for line in logs if line["event"] == "access"]
    assert [line["route"] for line in access] == ["tasks.runs.events"]
    assert raw.headers["x-gateway-request-id"] == access[0]["request_id"]
