"""Billable calls through the official SDK are counted per app, kind and processor; cache hits
as saved calls; failed calls not at all; the counts reach the store when the gateway stops."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from parallel import APIStatusError
from parallel.types.run_input_param import RunInputParam

from gateway.billing.flush import utc_day
from gateway.config import Settings
from gateway.storage.types import ReplayMode
from tests.fake_upstream import Scripted, error_json
from tests.passthrough_support import Harness, Start, with_keys
from tests.passthrough_support import start as start  # the fixture, with upstream
from tests.passthrough_support import upstream as upstream  # FakeParallel
from tests.storage_support import opened_storage

Row = tuple[str, str, str | None, int, int]  # app, kind, processor, calls, saved_calls


async def stored_counts(gw: Harness) -> list[Row]:
    """Stop the gateway (its last flush), then read what the store holds for today."""
    await gw.gateway.server.close()
    day = utc_day(time.time())
    async with opened_storage(gw.settings.storage) as storage:
        counts = await storage.billing_calls.counts(day, day)
    assert {c.day for c in counts} <= {day}
    return sorted((c.app, c.kind, c.processor, c.calls, c.saved_calls) for c in counts)


async def test_creates_groups_search_and_extract_are_counted_by_app_and_processor(
    start: Start,
) -> None:
    gw = await start(apps=("a", "b"))
    a, b = gw.sdk("a"), gw.sdk("b")
    await a.task_run.create(input="q1", processor="lite")
    await a.task_run.create(input="q2", processor="lite")
    await a.task_run.create(input="q3", processor="pro-fast")
    await b.task_run.create(input="q4", processor="core")
    group = await a.task_group.create()
    await a.task_group.add_runs(
        group.task_group_id,
        inputs=[
            {"input": "g1", "processor": "lite"},
            {"input": "g2", "processor": "base"},
            {"input": "g3", "processor": "base"},
        ],
    )
    await a.task_group.add_runs(group.task_group_id, inputs=[{"input": "g4", "processor": "core"}])
    await b.search(search_queries=["gdp"], objective="GDP")
    await b.search(search_queries=["cpi"], objective="CPI")
    await a.extract(urls=["https://example.com/a", "https://example.com/b"])
    await b.beta.findall.create(
        entity_type="companies",
        generator="base",
        match_conditions=[{"name": "saas", "description": "Sells software"}],
        match_limit=5,
        objective="SaaS companies",
    )

    assert len(gw.sent()) == 11
    assert await stored_counts(gw) == [
        ("a", "extract", None, 1, 0),
        ("a", "group_run", "base", 2, 0),
        ("a", "group_run", "core", 1, 0),
        ("a", "group_run", "lite", 1, 0),
        ("a", "task_run", "lite", 2, 0),
        ("a", "task_run", "pro-fast", 1, 0),
        ("b", "findall", "base", 1, 0),
        ("b", "search", None, 2, 0),
        ("b", "task_run", "core", 1, 0),
    ]


async def test_hits_count_as_saved_calls_and_only_misses_go_upstream(start: Start) -> None:
    gw = await start(apps=("a", "b"))
    a, b = gw.sdk("a"), gw.sdk("b")
    run = await a.task_run.create(input="q", processor="base")
    for client in (a, a, b):  # a miss, then a hit for each app (the hit path's, on a keep-alive)
        await client.task_run.retrieve_input(run.run_id)
        await client.task_run.result(run.run_id)
        await client.task_run.retrieve(run.run_id)

    run_id = run.run_id
    assert gw.sent() == [
        ("POST", "/v1/tasks/runs"),
        ("GET", f"/v1/tasks/runs/{run_id}/input"),
        ("GET", f"/v1/tasks/runs/{run_id}/result"),
        ("GET", f"/v1/tasks/runs/{run_id}"),
    ]
    assert await stored_counts(gw) == [
        ("a", "run", None, 0, 1),
        ("a", "run_input", None, 0, 1),
        ("a", "run_result", None, 0, 1),
        ("a", "task_run", "base", 1, 0),
        ("b", "run", None, 0, 1),
        ("b", "run_input", None, 0, 1),
        ("b", "run_result", None, 0, 1),
    ]


async def test_failed_calls_are_not_counted(start: Start) -> None:
    gw = await start()
    sdk = gw.sdk()
    for status in (402, 422, 429, 500, 503):
        gw.fake.script.append(Scripted(status, error_json(f"refused with {status}")))
        with pytest.raises(APIStatusError) as raised:
            await sdk.task_run.create(input="q", processor="ultra")
        assert raised.value.status_code == status
    gw.fake.script.append(Scripted(400, error_json("bad search")))
    with pytest.raises(APIStatusError) as raised:
        await sdk.search(search_queries=["x"])
    assert raised.value.status_code == 400
    gw.fake.script.append(Scripted(502, b"<html>bad gateway</html>"))
    with pytest.raises(APIStatusError) as raised:
        await sdk.extract(urls=["https://example.com/a"])
    assert raised.value.status_code == 502
    await sdk.task_run.create(input="q", processor="ultra")

    assert len(gw.sent()) == 8
    assert await stored_counts(gw) == [("app", "task_run", "ultra", 1, 0)]


async def test_a_large_streamed_body_is_counted_by_its_processors(start: Start) -> None:
    """A body over one chunk goes upstream streamed, and over aiohttp's 1 MiB read limit too:
    billing reads the body as it was sent."""
    gw = await start()
    gw.fake.app._client_max_size = 8 * 1024 * 1024  # the fake reads every body whole
    group = await gw.sdk().task_group.create()
    big = "x" * (1024 * 1024)
    inputs: list[RunInputParam] = [
        {"input": big, "processor": "core"},
        {"input": big, "processor": "core"},
        {"input": "small", "processor": "lite"},
    ]
    await gw.sdk().task_group.add_runs(group.task_group_id, inputs=inputs)

    assert len(gw.fake.exchanges[-1].body) > 2 * 1024 * 1024
    assert await stored_counts(gw) == [
        ("app", "group_run", "core", 2, 0),
        ("app", "group_run", "lite", 1, 0),
    ]


async def test_a_replayed_create_counts_as_a_saved_task_run(
    start: Start, make_settings: Callable[..., Settings]
) -> None:
    gw = await with_keys(start, make_settings(), {"ci": ReplayMode.REPLAY})
    sdk = gw.sdk("ci")
    run = await sdk.task_run.create(input="q", processor="core")
    await sdk.task_run.result(run.run_id)
    again = await sdk.task_run.create(input="q", processor="core")  # replayed: nothing sent

    assert again.run_id == run.run_id
    assert [m for m, p in gw.sent() if p == "/v1/tasks/runs"] == ["POST"]
    assert await stored_counts(gw) == [("ci", "task_run", "core", 1, 1)]
