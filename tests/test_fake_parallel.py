"""The official SDK, pointed straight at FakeParallel: the fake speaks the API the SDK expects."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer
from parallel import (
    APIStatusError,
    AsyncParallel,
    AuthenticationError,
    InternalServerError,
    NotFoundError,
    UnprocessableEntityError,
)
from parallel.types import (
    ErrorEvent,
    TaskGroupStatusEvent,
    TaskRun,
    TaskRunEvent,
    TaskRunProgressMessageEvent,
    TaskRunProgressStatsEvent,
    TaskRunTextOutput,
)
from parallel.types.beta import (
    FindAllCandidateMatchStatusEvent,
    FindAllRunStatusEvent,
    FindAllSchemaUpdatedEvent,
)
from yarl import URL

from tests.conftest import eventually
from tests.fake_parallel import FINDALL_BETA, FakeParallel
from tests.fake_upstream import TEAM_KEY, Scripted, error_json

RUN_ID = re.compile(r"trun_[0-9a-f]{32}")
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
STATE = "task_run.state"
SPEC = {"output_schema": {"type": "text", "description": "GDP"}}


@pytest.fixture
async def fake(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> FakeParallel:
    return await FakeParallel().listen(aiohttp_server)


@pytest.fixture
async def client(fake: FakeParallel) -> AsyncIterator[AsyncParallel]:
    """The SDK with pydantic validation of every response and stream event turned on."""
    sdk = AsyncParallel(
        api_key=TEAM_KEY, base_url=fake.base_url, max_retries=0, _strict_response_validation=True
    )
    yield sdk
    await sdk.close()


async def test_task_run_create_retrieve_result_input(
    fake: FakeParallel, client: AsyncParallel
) -> None:
    created = await client.task_run.create(
        input={"country": "France"},
        processor="core",
        metadata={"team": "data"},
        task_spec={"output_schema": {"type": "text", "description": "GDP"}},
        betas=["events-sse-2025-07-24", "mcp-server-2025-07-17"],
        extra_body={"future_field": {"kept": True}},
    )
    sent = fake.last("POST", "/v1/tasks/runs")
    assert sent.headers["parallel-beta"] == "events-sse-2025-07-24,mcp-server-2025-07-17"
    assert sent.headers["x-api-key"] == TEAM_KEY
    assert sent.headers["content-type"] == "application/json"
    assert sent.json() == {
        "input": {"country": "France"},
        "processor": "core",
        "metadata": {"team": "data"},
        "task_spec": SPEC,
        "future_field": {"kept": True},
    }
    assert RUN_ID.fullmatch(created.run_id)
    assert STAMP.fullmatch(created.created_at or "")
    assert created.to_dict() == {
        "run_id": created.run_id,
        "interaction_id": created.run_id,
        "status": "queued",
        "is_active": True,
        "processor": "core",
        "metadata": {"team": "data"},
        "taskgroup_id": None,
        "created_at": created.created_at,
        "modified_at": created.modified_at,
        "error": None,
        "warnings": None,
    }

    run = await client.task_run.retrieve(created.run_id)
    assert (run.status, run.is_active, run.processor) == ("completed", False, "core")

    result = await client.task_run.result(created.run_id, api_timeout=5)
    assert fake.exchanges[-1].raw_path == f"/v1/tasks/runs/{created.run_id}/result?timeout=5"
    assert result.run.status == "completed"
    assert isinstance(result.output, TaskRunTextOutput)
    assert result.output.content == f"Answer for {created.run_id}"
    assert [b.field for b in result.output.basis] == ["output"]

    raw_input = await client.task_run.with_raw_response.retrieve_input(created.run_id)
    assert await raw_input.read() == sent.body  # the body as sent, unknown fields and all
    assert (await raw_input.parse()).to_dict() == sent.json()
    assert fake.count(created.run_id) == 1  # FakeUpstream's input route answered
    assert [(r.method, r.raw_path.split("?")[0][:15]) for r in fake.requests] == [
        ("POST", "/v1/tasks/runs"),
        ("GET", "/v1/tasks/runs/"),
        ("GET", "/v1/tasks/runs/"),
        ("GET", "/v1/tasks/runs/"),
    ]


async def test_run_events_stream(fake: FakeParallel, client: AsyncParallel) -> None:
    run = await client.task_run.create(input="What is GDP?", processor="lite")
    stream = await client.task_run.events(run.run_id)
    events = [event async for event in stream]

    assert fake.last("GET", f"/v1/tasks/runs/{run.run_id}/events").headers["accept"] == (
        "text/event-stream"
    )
    assert [e.type for e in events] == [
        "task_run.state",
        "task_run.progress_msg.exec_status",
        "task_run.progress_stats",
        "task_run.state",
    ]
    first, message, stats, last = events
    assert isinstance(first, TaskRunEvent)
    assert (first.run.status, first.run.is_active, first.output) == ("running", True, None)
    assert isinstance(message, TaskRunProgressMessageEvent)
    assert message.message == "Starting research"
    assert isinstance(stats, TaskRunProgressStatsEvent)
    assert (stats.progress_meter, stats.source_stats.num_sources_read) == (50.0, 2)
    assert isinstance(last, TaskRunEvent)
    assert (last.run.status, last.run.is_active) == ("completed", False)
    assert isinstance(last.output, TaskRunTextOutput)
    assert last.output.content == f"Answer for {run.run_id}"
    assert (fake.streams_finished, fake.streams_cancelled) == (1, 0)


async def test_first_event_arrives_while_the_stream_is_held(
    fake: FakeParallel, client: AsyncParallel
) -> None:
    run = await client.task_run.create(input="q", processor="lite")
    fake.hold_stream = asyncio.Event()
    stream = await client.task_run.events(run.run_id)

    first = await asyncio.wait_for(anext(stream), timeout=2)
    assert isinstance(first, TaskRunEvent)
    assert first.run.status == "running"
    assert fake.streams_finished == 0

    fake.hold_stream.set()
    rest = [event.type async for event in stream]
    assert rest == ["task_run.progress_msg.exec_status", "task_run.progress_stats", STATE]
    assert fake.streams_finished == 1


async def test_a_stream_the_client_closes_is_counted(
    fake: FakeParallel, client: AsyncParallel
) -> None:
    run = await client.task_run.create(input="q", processor="lite")
    fake.hold_stream = asyncio.Event()
    stream = await client.task_run.events(run.run_id)
    await anext(stream)
    await stream.close()

    await eventually(lambda: fake.streams_cancelled == 1)
    assert fake.streams_finished == 0


async def test_event_gap_spaces_events(fake: FakeParallel, client: AsyncParallel) -> None:
    run = await client.task_run.create(input="q", processor="lite")
    fake.event_gap = 0.02
    start = time.monotonic()
    events = [event async for event in await client.task_run.events(run.run_id)]
    assert len(events) == 4
    assert time.monotonic() - start >= 3 * 0.02


async def test_task_group_flow(fake: FakeParallel, client: AsyncParallel) -> None:
    group = await client.task_group.create(metadata={"batch": "one"})
    assert re.fullmatch(r"tgrp_[0-9a-f]{32}", group.task_group_id)
    assert group.to_dict() == {
        "taskgroup_id": group.task_group_id,
        "metadata": {"batch": "one"},
        "created_at": group.created_at,
        "status": {
            "num_task_runs": 0,
            "task_run_status_counts": {},
            "is_active": False,
            "status_message": None,
            "modified_at": group.created_at,
        },
    }
    gid = group.task_group_id

    added = await client.task_group.add_runs(
        gid,
        inputs=[{"input": "a", "processor": "lite"}, {"input": {"n": 2}, "processor": "base"}],
        default_task_spec={"output_schema": {"type": "text", "description": "GDP"}},
        betas=["mcp-server-2025-07-17"],
    )
    sent = fake.last("POST", f"/v1/tasks/groups/{gid}/runs")
    assert sent.headers["parallel-beta"] == "mcp-server-2025-07-17"
    assert sent.json() == {
        "inputs": [{"input": "a", "processor": "lite"}, {"input": {"n": 2}, "processor": "base"}],
        "default_task_spec": SPEC,
    }
    assert len(added.run_ids) == 2
    assert all(RUN_ID.fullmatch(rid) for rid in added.run_ids)
    assert (added.event_cursor, added.run_cursor) == (None, None)
    assert added.status.task_run_status_counts == {"queued": 2}
    assert (added.status.is_active, added.status.num_task_runs) == (True, 2)

    again = await client.task_group.retrieve(gid)
    assert again.status.task_run_status_counts == {"completed": 2}
    assert again.status.is_active is False

    runs = await client.task_group.get_runs(gid, include_input=True, include_output=True)
    events = [event async for event in runs]
    assert fake.exchanges[-1].raw_path == (
        f"/v1/tasks/groups/{gid}/runs?include_input=true&include_output=true"
    )
    assert fake.exchanges[-1].headers["accept"] == "text/event-stream"
    assert [e.run.run_id for e in events if isinstance(e, TaskRunEvent)] == added.run_ids
    first = events[0]
    assert isinstance(first, TaskRunEvent)
    assert (first.event_id, first.run.task_group_id) == ("cursor_1", gid)
    assert first.run.status == "completed"
    assert first.input is not None
    assert first.input.to_dict() == {"task_spec": SPEC, "input": "a", "processor": "lite"}
    assert isinstance(first.output, TaskRunTextOutput)

    resumed = [e async for e in await client.task_group.get_runs(gid, last_event_id="cursor_1")]
    assert [e.run.run_id for e in resumed if isinstance(e, TaskRunEvent)] == added.run_ids[1:]
    assert isinstance(resumed[0], TaskRunEvent)
    assert (resumed[0].input, resumed[0].output) == (None, None)

    group_events = [event async for event in await client.task_group.events(gid)]
    assert [e.type for e in group_events] == [
        "task_group_status",
        "task_run.state",
        "task_run.state",
        "task_group_status",
    ]
    status = group_events[0]
    assert isinstance(status, TaskGroupStatusEvent)
    assert status.status.task_run_status_counts == {"completed": 2}

    run = await client.task_group.retrieve_run(added.run_ids[1], task_group_id=gid)
    assert isinstance(run, TaskRun)
    assert (run.run_id, run.task_group_id, run.processor) == (added.run_ids[1], gid, "base")
    run_input = await client.task_run.retrieve_input(added.run_ids[1])
    assert run_input.input == {"n": 2}


async def test_search(fake: FakeParallel, client: AsyncParallel) -> None:
    found = await client.search(search_queries=["gdp france", "gdp 2023"], objective="GDP")
    assert fake.last("POST", "/v1/search").json() == {
        "search_queries": ["gdp france", "gdp 2023"],
        "objective": "GDP",
    }
    assert re.fullmatch(r"search_[0-9a-f]{32}", found.search_id)
    assert [(r.url, r.title, r.excerpts) for r in found.results] == [
        ("https://example.com/search/0", "About gdp france", ["An excerpt about gdp france."]),
        ("https://example.com/search/1", "About gdp 2023", ["An excerpt about gdp 2023."]),
    ]
    assert found.session_id.startswith("session_")
    again = await client.search(search_queries=["x"], session_id="s1")
    assert again.session_id == "s1"


async def test_extract(fake: FakeParallel, client: AsyncParallel) -> None:
    got = await client.extract(urls=["https://example.com/a", "https://invalid.example/b"])
    assert fake.last("POST", "/v1/extract").json() == {
        "urls": ["https://example.com/a", "https://invalid.example/b"]
    }
    assert re.fullmatch(r"extract_[0-9a-f]{32}", got.extract_id)
    assert [(r.url, r.excerpts) for r in got.results] == [
        ("https://example.com/a", ["From https://example.com/a."])
    ]
    assert [(e.url, e.error_type, e.http_status_code) for e in got.errors] == [
        ("https://invalid.example/b", "fetch_error", 404)
    ]


async def test_findall_create_events_result(fake: FakeParallel, client: AsyncParallel) -> None:
    run = await client.beta.findall.create(
        entity_type="companies",
        generator="core",
        match_conditions=[{"name": "saas", "description": "Sells software"}],
        match_limit=5,
        objective="SaaS companies",
        betas=["mcp-server-2025-07-17"],
    )
    sent = fake.last("POST", "/v1beta/findall/runs")
    assert sent.headers["parallel-beta"] == f"mcp-server-2025-07-17,{FINDALL_BETA}"
    assert re.fullmatch(r"findall_[0-9a-f]{32}", run.findall_id)
    assert (run.generator, run.status.status, run.status.is_active) == ("core", "queued", True)

    events = [event async for event in await client.beta.findall.events(run.findall_id)]
    sent = fake.last("GET", f"/v1beta/findall/runs/{run.findall_id}/events")
    assert (sent.headers["parallel-beta"], sent.headers["accept"]) == (
        FINDALL_BETA,
        "text/event-stream",
    )
    assert [e.type for e in events] == [
        "findall.status",
        "findall.candidate.generated",
        "findall.candidate.matched",
        "findall.status",
    ]
    assert not any(isinstance(e, ErrorEvent | FindAllSchemaUpdatedEvent) for e in events)
    last, matched = events[-1], events[2]
    assert isinstance(last, FindAllRunStatusEvent)
    assert (last.data.status.status, last.data.status.metrics.matched_candidates_count) == (
        "completed",
        1,
    )
    assert isinstance(matched, FindAllCandidateMatchStatusEvent)
    assert (matched.data.name, matched.data.match_status) == ("Acme", "matched")

    again = await client.beta.findall.retrieve(run.findall_id)
    assert again.status.termination_reason == "candidates_exhausted"
    result = await client.beta.findall.result(run.findall_id)
    assert [(c.name, c.match_status) for c in result.candidates] == [
        ("Acme", "matched"),
        ("Globex", "unmatched"),
    ]


async def test_findall_without_its_beta_header_is_refused(
    fake: FakeParallel, client: AsyncParallel
) -> None:
    with pytest.raises(APIStatusError) as caught:
        await client.beta.findall.retrieve("findall_x", extra_headers={"parallel-beta": "other"})
    assert caught.value.status_code == 400


async def test_wrong_api_key(fake: FakeParallel) -> None:
    async with AsyncParallel(api_key="wrong", base_url=fake.base_url, max_retries=0) as sdk:
        with pytest.raises(AuthenticationError) as caught:
            await sdk.task_run.create(input="q", processor="lite")
        with pytest.raises(AuthenticationError):
            await sdk.task_run.events("trun_x")
        with pytest.raises(AuthenticationError):
            await sdk.search(search_queries=["x"])
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["message"] == "Unauthorized: invalid or missing credentials"
    assert fake.runs == {}


async def test_unknown_ids_are_404_error_responses(
    fake: FakeParallel, client: AsyncParallel
) -> None:
    with pytest.raises(NotFoundError) as caught:
        await client.task_run.retrieve("a/b")
    assert fake.exchanges[-1].raw_path == "/v1/tasks/runs/a%2Fb"
    assert caught.value.body == orjson.loads(fake.last_error)
    for call in (
        client.task_run.events("trun_missing"),
        client.task_run.result("trun_missing"),
        client.task_group.retrieve("tgrp_missing"),
        client.task_group.get_runs("tgrp_missing"),
        client.beta.findall.retrieve("findall_missing"),
    ):
        with pytest.raises(NotFoundError):
            await call


async def test_validation_errors_are_422(fake: FakeParallel, client: AsyncParallel) -> None:
    with pytest.raises(UnprocessableEntityError) as caught:
        await client.post("/v1/tasks/runs", body={"input": "q"}, cast_to=TaskRun)
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["message"] == "Request validation error"
    assert caught.value.body["error"]["detail"] == {"reason": "input and processor are required"}
    assert fake.runs == {}


async def test_runs_that_stay_active(fake: FakeParallel, client: AsyncParallel) -> None:
    fake.runs_complete = False
    run = await client.task_run.create(input="q", processor="lite")
    assert (await client.task_run.retrieve(run.run_id)).status == "running"
    with pytest.raises(APIStatusError) as caught:
        await client.task_run.result(run.run_id, api_timeout=1)
    assert caught.value.status_code == 408


async def test_script_comes_first_on_every_route(fake: FakeParallel, client: AsyncParallel) -> None:
    fake.script.append(Scripted(status=503, body=error_json("busy")))
    with pytest.raises(InternalServerError):
        await client.search(search_queries=["x"])
    assert len((await client.search(search_queries=["x"])).results) == 1
    assert fake.count() == 2


async def test_echo_returns_the_raw_path(fake: FakeParallel) -> None:
    url = URL(f"{fake.base_url}/v1/echo/a%2Fb/%25?q=%20x", encoded=True)
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers={"x-api-key": TEAM_KEY}) as resp,
    ):
        assert resp.status == 200
        assert await resp.json() == {"raw_path": "/v1/echo/a%2Fb/%25?q=%20x"}
