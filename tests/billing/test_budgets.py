"""Budgets: a billable call past an app's cap gets 402 with nothing sent upstream; other apps
and non-billable calls go on; the next period starts afresh; replicas keep one budget."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import orjson
import pytest
from parallel import APIStatusError, AsyncParallel

from gateway.billing.budgets import Budgets
from gateway.billing.calls import TASK_RUN
from gateway.billing.periods import Budget, period_end, period_start
from gateway.billing.prices import price_table
from gateway.billing.tally import Tally
from gateway.config import PricesSettings, Settings, StorageSettings
from gateway.errors import BudgetExceededError
from gateway.keys.app_keys import create_key
from gateway.storage.types import CallCount, ReplayMode
from tests.conftest import StartGateway, run_cli
from tests.passthrough_support import Start, WatchedParallel, error_of
from tests.passthrough_support import start as start  # the fixture, with upstream
from tests.passthrough_support import upstream as upstream  # FakeParallel
from tests.storage_support import opened_storage

PRICES = price_table(PricesSettings())
CORE = b'{"input": "q", "processor": "core"}'  # 0.025 USD


@pytest.mark.parametrize(
    ("per", "day", "start", "end"),
    [
        ("day", date(2026, 3, 31), date(2026, 3, 31), date(2026, 4, 1)),
        ("week", date(2026, 3, 4), date(2026, 3, 2), date(2026, 3, 9)),  # a Wednesday
        ("week", date(2026, 3, 2), date(2026, 3, 2), date(2026, 3, 9)),  # a Monday
        ("week", date(2026, 3, 8), date(2026, 3, 2), date(2026, 3, 9)),  # a Sunday
        ("month", date(2026, 2, 28), date(2026, 2, 1), date(2026, 3, 1)),
        ("month", date(2026, 12, 31), date(2026, 12, 1), date(2027, 1, 1)),
        ("month", date(2026, 1, 31), date(2026, 1, 1), date(2026, 2, 1)),
    ],
)
def test_periods(per: str, day: date, start: date, end: date) -> None:
    assert (period_start(per, day), period_end(per, day)) == (start, end)


class Clock:
    def __init__(self, at: datetime) -> None:
        self.now = at.timestamp()

    def __call__(self) -> float:
        return self.now


async def test_the_cap_counts_stored_unflushed_and_in_flight_calls_and_the_next_day_resets(
    tmp_path: Path,
) -> None:
    clock = Clock(datetime(2026, 3, 31, 23, 59, tzinfo=UTC))
    tally = Tally()
    async with opened_storage(StorageSettings(database=str(tmp_path / "gw.db"))) as storage:
        await create_key(storage.app_keys, "capped", budget=Budget(0.1, "day"))
        await create_key(storage.app_keys, "free")
        # Yesterday's spend does not count today; today's stored spend does.
        await storage.billing_calls.add(
            [
                CallCount("capped", "2026-03-30", TASK_RUN, "ultra", 9, 0),
                CallCount("capped", "2026-03-31", TASK_RUN, "core", 1, 0),
            ]
        )
        budgets = Budgets(tally, storage.billing_calls, storage.app_keys, PRICES, clock)
        await budgets.refresh()
        assert budgets.capped("capped")
        assert not budgets.capped("free")

        tally.count_calls("capped", TASK_RUN, {"core": 1})  # counted, not yet flushed
        with budgets.hold("capped", TASK_RUN, CORE):  # in flight: 0.075 with it
            with (
                pytest.raises(BudgetExceededError) as raised,
                budgets.hold("capped", TASK_RUN, b'{"processor": "pro"}'),
            ):
                pass
            with budgets.hold("capped", TASK_RUN, b'{"processor": "lite"}'):  # 0.08
                pass
            with budgets.hold("free", TASK_RUN, b'{"processor": "ultra8x"}'):
                pass
        with budgets.hold("capped", TASK_RUN, CORE):  # 0.075 again once the first ended
            pass
        assert raised.value.status == 402
        assert raised.value.headers == {"x-should-retry": "false"}
        assert raised.value.message == (
            "Budget exceeded: app 'capped' may spend 0.1 USD per day (estimated; spent 0.0750 "
            "USD, this call 0.1000 USD). The budget resets at 2026-04-01T00:00:00Z."
        )

        clock.now += 120  # past midnight: a new day, before any refresh
        tally.calls.clear()
        with budgets.hold("capped", TASK_RUN, b'{"processor": "pro"}'):  # 0.1: the whole cap
            pass
        await budgets.refresh()
        with budgets.hold("capped", TASK_RUN, CORE):
            pass


async def capped_budgets(tmp_path: Path, tally: Tally) -> tuple[Budgets, Clock]:
    """An app `capped` at 0.1 USD a day, nothing spent, on a SQLite store."""
    clock = Clock(datetime(2026, 3, 31, 12, 0, tzinfo=UTC))
    async with opened_storage(StorageSettings(database=str(tmp_path / "gw.db"))) as storage:
        await create_key(storage.app_keys, "capped", budget=Budget(0.1, "day"))
        budgets = Budgets(tally, storage.billing_calls, storage.app_keys, PRICES, clock)
        await budgets.refresh()
    return budgets, clock


async def test_overlapping_calls_of_unknown_cost_are_each_let_go(tmp_path: Path) -> None:
    """Two calls priced at nothing (a processor with no price) in flight at once: the first to
    end must not take the second's hold with it (the second ended in a KeyError: a 500)."""
    budgets, _ = await capped_budgets(tmp_path, Tally())
    unknown = b'{"input": "q", "processor": "mega"}'
    with budgets.hold("capped", TASK_RUN, unknown):
        with budgets.hold("capped", TASK_RUN, unknown):
            pass
        with budgets.hold("capped", TASK_RUN, CORE):
            pass
    assert budgets.spent("capped", date(2026, 3, 31)) == 0.0


async def test_counts_being_flushed_still_count_against_the_cap(tmp_path: Path) -> None:
    """Between a flush taking the counts and the budgets re-reading the store, the counts are
    in neither: they must still count, or an app at its cap is let through meanwhile."""
    tally = Tally()
    budgets, _ = await capped_budgets(tmp_path, tally)
    tally.count_calls("capped", TASK_RUN, {"core": 4})  # 0.1: the whole cap
    with pytest.raises(BudgetExceededError), budgets.hold("capped", TASK_RUN, CORE):
        pass
    batch = tally.take("2026-03-31")  # a flush has taken them, and writes them
    with pytest.raises(BudgetExceededError), budgets.hold("capped", TASK_RUN, CORE):
        pass
    tally.give_back(batch)  # the write failed: they are counted as unflushed again
    assert budgets.spent("capped", date(2026, 3, 31)) == pytest.approx(0.1)
    tally.take("2026-03-31")  # stored, but the budgets could not re-read the store
    tally.count_calls("capped", TASK_RUN, {"lite": 1})
    batch = tally.take("2026-03-31")  # the next flush: the first batch still counts
    assert budgets.spent("capped", date(2026, 3, 31)) == pytest.approx(0.105)
    tally.give_back(batch)  # only this write failed
    assert budgets.spent("capped", date(2026, 3, 31)) == pytest.approx(0.105)
    tally.settle()  # stored, and the budgets re-read: the flush is done with them
    assert budgets.spent("capped", date(2026, 3, 31)) == pytest.approx(0.005)


async def test_a_call_past_the_cap_gets_402_and_nothing_goes_upstream(
    start: Start, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(billing={"flush_interval": 60.0})
    async with opened_storage(settings.storage) as storage:
        capped_key = await create_key(storage.app_keys, "capped", budget=Budget(0.05, "day"))
    gw = await start(settings, apps=("other",))
    capped = AsyncParallel(api_key=capped_key, base_url=gw.gateway.url, max_retries=2)
    other = gw.sdk("other")

    run = await capped.task_run.create(input="q1", processor="core")
    await capped.task_run.create(input="q2", processor="core")  # 0.05: the cap, reached
    sent = len(gw.sent())
    with pytest.raises(APIStatusError) as raised:
        await capped.task_run.with_raw_response.create(input="q3", processor="lite")
    group = await capped.task_group.create()  # not billed: served
    with pytest.raises(APIStatusError):
        await capped.task_group.add_runs(
            group.task_group_id, inputs=[{"input": "g", "processor": "lite"}]
        )
    # Reads are never refused for budget; another app is not touched by this one's cap.
    await capped.task_run.retrieve(run.run_id)
    await capped.task_run.result(run.run_id)
    await capped.task_run.retrieve_input(run.run_id)
    await other.task_run.create(input="q4", processor="ultra")
    await capped.close()

    response = raised.value.response
    assert response.status_code == 402
    assert response.headers["x-should-retry"] == "false"  # the SDK tried once, not 3 times
    today = datetime.now(UTC).date()
    assert error_of(response.content)["message"] == (
        "Budget exceeded: app 'capped' may spend 0.05 USD per day (estimated; spent 0.0500 USD, "
        f"this call 0.0050 USD). The budget resets at {period_end('day', today)}T00:00:00Z."
    )
    assert gw.sent(sent) == [
        ("POST", "/v1/tasks/groups"),
        ("GET", f"/v1/tasks/runs/{run.run_id}"),
        ("GET", f"/v1/tasks/runs/{run.run_id}/result"),
        ("GET", f"/v1/tasks/runs/{run.run_id}/input"),
        ("POST", "/v1/tasks/runs"),
    ]
    assert gw.fake.exchanges[-1].json() == {"input": "q4", "processor": "ultra"}

    await gw.gateway.server.close()
    listed = await run_cli(gw.gateway.config, "keys", "list")
    line = next(line for line in listed.out.decode().splitlines() if line.startswith("capped"))
    assert "0.0500 of 0.05/day" in line


async def test_two_gateways_on_one_postgresql_keep_one_budget(
    start_gateway: StartGateway,
    make_settings: Callable[..., Settings],
    postgres_url: str,
    upstream: WatchedParallel,
) -> None:
    settings = make_settings(storage={"database": postgres_url}, billing={"flush_interval": 0.05})
    async with opened_storage(settings.storage) as storage:
        key = await create_key(storage.app_keys, "capped", budget=Budget(0.05, "week"))
    first = await start_gateway(settings, app="first")
    second = await start_gateway(settings, app="second")
    via_first = AsyncParallel(api_key=key, base_url=first.url, max_retries=0)
    via_second = AsyncParallel(api_key=key, base_url=second.url, max_retries=0)

    await via_first.task_run.create(input="q1", processor="core")
    await via_first.task_run.create(input="q2", processor="core")  # the cap, on the first
    admitted, refused = 0, None
    for _ in range(100):  # until the first has flushed and the second re-read the spend
        try:
            await via_second.task_run.create(input="probe", processor="lite")
        except APIStatusError as e:
            refused = e
            break
        admitted += 1
        await asyncio.sleep(0.05)
    # Once refused on one, refused on both: one budget.
    with pytest.raises(APIStatusError) as again:
        await via_first.task_run.create(input="q3", processor="lite")
    await via_first.close()
    await via_second.close()

    assert refused is not None
    assert refused.status_code == 402
    assert again.value.status_code == 402
    creates = [e for e in upstream.exchanges if e.method == "POST"]
    assert len(creates) == 2 + admitted  # nothing refused went upstream


async def test_keys_create_and_update_set_and_remove_a_budget(start: Start) -> None:
    gw = await start()
    config = gw.gateway.config

    created = await run_cli(config, "keys", "create", "team-a", "--budget", "12.5", "--per", "week")
    updated = await run_cli(config, "keys", "update", "app", "--budget", "3", "--per", "month")
    listed = await run_cli(config, "keys", "list", "--json")
    removed = await run_cli(config, "keys", "update", "team-a", "--no-budget")
    relisted = await run_cli(config, "keys", "list", "--json")

    assert (created.code, updated.code, removed.code) == (0, 0, 0)
    budgets = [
        (row["name"], row["budget_usd"], row["budget_per"], row["spent_usd"])
        for row in map(orjson.loads, listed.out.splitlines())
    ]
    assert budgets == [("app", 3.0, "month", 0.0), ("team-a", 12.5, "week", 0.0)]
    rebudgets = [
        (row["name"], row["budget_usd"], row["budget_per"], row["spent_usd"])
        for row in map(orjson.loads, relisted.out.splitlines())
    ]
    assert rebudgets == [("app", 3.0, "month", 0.0), ("team-a", None, None, None)]


async def test_a_replayed_create_is_never_refused_for_budget(
    start: Start, make_settings: Callable[..., Settings]
) -> None:
    """A replay sends nothing upstream, so it costs nothing: a key at its cap still gets it."""
    settings = make_settings(billing={"flush_interval": 60.0})
    async with opened_storage(settings.storage) as storage:
        key = await create_key(
            storage.app_keys, "ci", budget=Budget(0.025, "day"), replay=ReplayMode.REPLAY
        )
    gw = await start(settings)
    ci = AsyncParallel(api_key=key, base_url=gw.gateway.url, max_retries=0)
    run = await ci.task_run.create(input="q", processor="core")  # 0.025: the cap, reached
    await ci.task_run.result(run.run_id)
    replayed = await ci.task_run.with_raw_response.create(input="q", processor="core")
    with pytest.raises(APIStatusError) as refused:
        await ci.task_run.create(input="another", processor="core")
    await ci.close()

    assert replayed.headers["cache-status"] == "parallel-gateway; hit; detail=replay"
    assert (await replayed.parse()).run_id == run.run_id
    assert refused.value.status_code == 402
    assert [m for m, p in gw.sent() if p == "/v1/tasks/runs"] == ["POST"]
