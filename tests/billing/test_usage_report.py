"""`parallel-gateway usage` after real calls through the official SDK: exact counts and costs,
as a table, JSON and CSV, by app, day and processor; Prometheus counters with the same labels."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import orjson
import pytest
from parallel.types.run_input_param import RunInputParam

from gateway.billing.flush import utc_day
from gateway.config import Settings
from tests.conftest import run_cli
from tests.passthrough_support import Harness, Start
from tests.passthrough_support import start as start  # the fixture, with upstream
from tests.passthrough_support import upstream as upstream  # FakeParallel


async def busy_day(start: Start, **settings: object) -> Harness:
    """Apps a and b: creates on several processors, a group with added runs, search, extract,
    and hits on a run's input and result."""
    gw = await start(apps=("a", "b"))
    a, b = gw.sdk("a"), gw.sdk("b")
    run = await a.task_run.create(input="q1", processor="core")
    await a.task_run.create(input="q2", processor="core")
    await a.task_run.create(input="q3", processor="ultra-fast")
    await b.task_run.create(input="q4", processor="lite")
    await b.task_run.create(input="q5", processor="mega")  # no price known
    group = await b.task_group.create()
    inputs: list[RunInputParam] = [{"input": f"g{n}", "processor": "base"} for n in range(3)]
    await b.task_group.add_runs(group.task_group_id, inputs=inputs)
    await b.search(search_queries=["gdp"], objective="GDP")
    await a.extract(urls=["https://example.com/a"])
    for _ in range(3):  # one miss, then two hits each
        await b.task_run.retrieve_input(run.run_id)
        await b.task_run.result(run.run_id)
    return gw


async def stopped(gw: Harness) -> Harness:
    await gw.gateway.server.close()  # the last flush
    return gw


def row(
    app: str | None,
    kind: str | None,
    processor: str | None,
    calls: int,
    usd: float | None,
    saved: int = 0,
    saved_usd: float | None = None,
    unpriced: int = 0,
    day: str | None = None,
) -> dict[str, object]:
    """A JSON row; a priced row's saved_usd is 0.0 unless given."""
    if saved_usd is None and usd is not None:
        saved_usd = 0.0
    return {
        "day": day,
        "app": app,
        "kind": kind,
        "processor": processor,
        "calls": calls,
        "estimated_usd": usd,
        "saved_calls": saved,
        "saved_usd": saved_usd,
        "unpriced_calls": unpriced,
    }


async def test_usage_json_gives_exact_counts_and_estimated_costs(start: Start) -> None:
    gw = await stopped(await busy_day(start))

    done = await run_cli(gw.gateway.config, "usage", "--json")

    assert (done.code, done.err) == (0, "")
    assert orjson.loads(done.out) == [
        row("a", "extract", None, 1, 0.001),
        row("a", "task_run", "core", 2, 0.05),
        row("a", "task_run", "ultra-fast", 1, 0.3),
        row("b", "group_run", "base", 3, 0.03),
        row("b", "run_input", None, 0, 0.0, 2, 0.0),
        row("b", "run_result", None, 0, 0.0, 2, 0.0),
        row("b", "search", None, 1, 0.005),
        row("b", "task_run", "lite", 1, 0.005),
        row("b", "task_run", "mega", 1, None, unpriced=1),
    ]


async def test_usage_by_app_processor_and_day(start: Start) -> None:
    gw = await stopped(await busy_day(start))
    today = utc_day(time.time())

    by_app = await run_cli(gw.gateway.config, "usage", "--json", "--by", "app")
    by_processor = await run_cli(gw.gateway.config, "usage", "--json", "--by", "processor")
    by_day = await run_cli(gw.gateway.config, "usage", "--json", "--by", "day", "--app", "a")

    assert orjson.loads(by_app.out) == [
        row("a", None, None, 4, 0.351),
        row("b", None, None, 6, 0.04, 4, 0.0, unpriced=1),
    ]
    assert orjson.loads(by_processor.out) == [
        row(None, "extract", None, 1, 0.001),
        row(None, "group_run", "base", 3, 0.03),
        row(None, "run_input", None, 0, 0.0, 2, 0.0),
        row(None, "run_result", None, 0, 0.0, 2, 0.0),
        row(None, "search", None, 1, 0.005),
        row(None, "task_run", "core", 2, 0.05),
        row(None, "task_run", "lite", 1, 0.005),
        row(None, "task_run", "mega", 1, None, unpriced=1),
        row(None, "task_run", "ultra-fast", 1, 0.3),
    ]
    assert orjson.loads(by_day.out) == [
        row("a", "extract", None, 1, 0.001, day=today),
        row("a", "task_run", "core", 2, 0.05, day=today),
        row("a", "task_run", "ultra-fast", 1, 0.3, day=today),
    ]


async def test_usage_table_and_csv(start: Start) -> None:
    gw = await stopped(await busy_day(start))
    today = utc_day(time.time())

    table = await run_cli(gw.gateway.config, "usage", "--by", "app", "--since", today)
    spreadsheet = await run_cli(gw.gateway.config, "usage", "--csv", "--app", "b", "--by", "app")

    assert table.out.decode() == (
        f"UTC days {today} to {today}; costs are estimates from [prices], not the bill.\n"
        "APP    CALLS  EST. USD  SAVED CALLS  SAVED USD\n"
        "a      4      0.3510    0            0.0000\n"
        "b      6      0.0400    4            0.0000\n"
        "TOTAL  10     0.3910    4            0.0000\n"
        "1 calls have no price in [prices]: not in EST. USD.\n"
    )
    assert spreadsheet.out.decode() == (
        "day,app,kind,processor,calls,estimated_usd,saved_calls,saved_usd,unpriced_calls\n"
        ",b,,,6,0.04,4,0.0,1\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--since", "yesterday"), "'yesterday' is not a date (YYYY-MM-DD)"),
        (("--until", "2026-13-01"), "'2026-13-01' is not a date (YYYY-MM-DD)"),
        (("--by", "week"), "argument --by: invalid choice: 'week'"),
        (("--json", "--csv"), "argument --csv: not allowed with argument --json"),
    ],
)
async def test_a_bad_argument_is_a_usage_error(
    start: Start, args: tuple[str, ...], message: str
) -> None:
    gw = await start()
    done = await run_cli(gw.gateway.config, "usage", *args)
    assert done.code == 2
    assert done.err.startswith("usage: parallel-gateway usage ")
    assert message in done.err


async def test_prometheus_counts_billable_and_saved_calls_by_app_kind_and_processor(
    start: Start, make_settings: Callable[..., Settings]
) -> None:
    gw = await start(make_settings(billing={"flush_interval": 0.05}))
    sdk = gw.sdk()
    run = await sdk.task_run.create(input="q", processor="pro")
    await sdk.task_run.create(input="q", processor="pro")
    await sdk.task_run.retrieve_input(run.run_id)
    await sdk.task_run.retrieve_input(run.run_id)
    expected = [
        'gateway_billable_calls_total{app="app",kind="task_run",processor="pro"} 2.0',
        'gateway_saved_calls_total{app="app",kind="run_input",processor=""} 1.0',
    ]

    text = ""
    for _ in range(100):  # counted once flushed, within a few flush intervals
        text = (await gw.gateway.get("/metrics", key=None)).body.decode()
        if all(line in text.splitlines() for line in expected):
            break
        await asyncio.sleep(0.05)
    series = ("gateway_billable_calls_total", "gateway_saved_calls_total")
    assert [line for line in text.splitlines() if line.startswith(series)] == expected
