"""Per-app rate limits and key expiry, end to end: the CLI sets them, a serving gateway obeys."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from parallel import AsyncParallel

from gateway.config import StorageSettings
from gateway.errors import GatewayError
from gateway.keys.app_keys import create_key
from gateway.keys.keyring import KeyRing
from gateway.keys.ratelimit import Limit
from tests.conftest import Gateway, Reply, run_cli
from tests.fake_upstream import FakeUpstream, task_run_input
from tests.ops.test_ops import metrics_text, sample
from tests.storage_support import opened_storage

RUN_ID = "trun_limited"
RUN = f"/v1/tasks/runs/{RUN_ID}/input"


async def cli(gateway: Gateway, *args: str) -> str:
    result = await run_cli(gateway.config, *args)
    assert result.code == 0, result.err
    return result.out.decode()


async def new_key(gateway: Gateway, name: str, *options: str) -> str:
    """A key made by the CLI while the gateway serves; returned once the gateway knows it."""
    key = (await cli(gateway, "keys", "create", name, *options)).strip()
    await until(gateway, key, lambda reply: reply.status != 401)
    return key


async def until(gateway: Gateway, key: str, done: object) -> Reply:
    """GET RUN until `done(reply)`, for at most the promised 2 seconds."""
    assert callable(done)
    deadline = asyncio.get_running_loop().time() + 2.0
    while True:
        reply = await gateway.get(RUN, key=key)
        if done(reply) or asyncio.get_running_loop().time() > deadline:
            return reply
        await asyncio.sleep(0.05)


def listed(out: str, name: str) -> dict[str, object]:
    entries = {entry["name"]: entry for entry in map(orjson.loads, out.splitlines())}
    entry: dict[str, object] = entries[name]
    return entry


async def test_over_the_limit_hits_get_429_with_retry_after(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    upstream.add(RUN_ID, task_run_input())
    # One token every 1,000 s: whatever the machine's speed, nothing refills during the test.
    key = await new_key(gateway, "slow-app", "--rate", "0.001", "--burst", "3")
    # new_key's request was a miss and took the first token; two hits take the rest.
    assert [(await gateway.get(RUN, key=key)).status for _ in range(2)] == [200, 200]

    refused = await gateway.get(RUN, key=key)

    assert refused.status == 429
    body = orjson.loads(refused.body)
    wait_ms = int(refused.headers["retry-after-ms"])
    assert 999_000 < wait_ms <= 1_000_000
    assert refused.headers["retry-after"] == str(-(-wait_ms // 1000))
    message = body["error"]["message"]
    assert body == {
        "type": "error",
        "error": {"ref_id": body["error"]["ref_id"], "message": message, "detail": None},
    }
    said = re.fullmatch(
        r"Rate limit exceeded: app 'slow-app' may make 0\.001 requests per second "
        r"\(bursts of 3\); retry in (\d+\.\d{3}) s\.",
        message,
    )
    assert said is not None
    assert float(said[1]) <= wait_ms / 1000 < float(said[1]) + 0.0011
    assert refused.headers["Cache-Status"] == "parallel-gateway; detail=rate-limited"
    assert upstream.count() == 1
    # Another app's key is not slowed by this one's limit.
    assert (await gateway.get(RUN)).status == 200
    _, text = await metrics_text(gateway)
    assert sample(text, "gateway_requests_total", route="tasks.runs.input", status="429",
                  app="slow-app", cache="detail=rate-limited") == 1.0  # fmt: skip
    assert sample(text, "gateway_requests_total", route="tasks.runs.input", status="200",
                  app="slow-app", cache="hit") == 2.0  # fmt: skip
    assert sample(text, "gateway_errors_total", kind="rate-limited") == 1.0


async def test_pass_through_calls_count_against_the_same_limit(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    upstream.add(RUN_ID, task_run_input())
    key = await new_key(gateway, "slow-app", "--rate", "0.001", "--burst", "2")
    other = await gateway.get("/v1/tasks/runs/trun_other", key=key)  # forwarded: 404 upstream
    assert other.status == 404
    before = upstream.count()

    refused = await gateway.get("/v1/tasks/runs/trun_other", key=key)

    assert refused.status == 429
    assert upstream.count() == before


async def test_a_new_key_is_never_served_without_its_rate_limit(tmp_path: Path) -> None:
    async with opened_storage(StorageSettings(database=str(tmp_path / "keys.db"))) as storage:
        key = await create_key(storage.app_keys, "capped", limit=Limit(rate=0.001, burst=1))
        ring = KeyRing()
        refresh = asyncio.create_task(ring.refresh(storage.app_keys))
        admitted = 0
        while not refresh.done():  # requests keep coming while the keys are reloaded
            with contextlib.suppress(GatewayError):
                ring.throttle(ring.authenticate({"x-api-key": key}))
                admitted += 1
            await asyncio.sleep(0)
        await refresh
    assert admitted <= 1  # its burst


async def test_the_sdk_retry_waits_as_long_as_retry_after_says(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    upstream.add(RUN_ID, task_run_input())
    key = await new_key(gateway, "steady-app", "--rate", "10", "--burst", "1")
    # One retry per call: a retry-after that is too short would make it fail again.
    async with AsyncParallel(api_key=key, base_url=gateway.url, max_retries=1) as client:
        for _ in range(4):
            got = await client.task_run.retrieve_input(RUN_ID)
            assert got.to_dict() == task_run_input()
    _, text = await metrics_text(gateway)
    route, app = "tasks.runs.input", "steady-app"
    assert sample(text, "gateway_requests_total", route=route, status="200", app=app,
                  cache="hit") == 4.0  # fmt: skip
    refused = sample(text, "gateway_requests_total", route=route, status="429", app=app,
                     cache="detail=rate-limited")  # fmt: skip
    assert refused is not None
    assert 1.0 <= refused <= 4.0


async def test_a_limit_changed_from_the_cli_applies_while_serving(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    upstream.add(RUN_ID, task_run_input())
    key = await new_key(gateway, "slow-app", "--rate", "0.001", "--burst", "1")
    assert (await gateway.get(RUN, key=key)).status == 429

    await cli(gateway, "keys", "update", "slow-app", "--rate", "1000", "--burst", "50")
    assert (await until(gateway, key, lambda reply: reply.status == 200)).status == 200
    entry = listed(await cli(gateway, "keys", "list", "--json"), "slow-app")
    assert (entry["rate"], entry["burst"]) == (1000.0, 50)

    await cli(gateway, "keys", "update", "slow-app", "--rate", "0.001", "--burst", "1")
    assert (await until(gateway, key, lambda reply: reply.status == 429)).status == 429

    await cli(gateway, "keys", "update", "slow-app", "--no-rate")
    assert (await until(gateway, key, lambda reply: reply.status == 200)).status == 200
    statuses = [(await gateway.get(RUN, key=key)).status for _ in range(20)]
    assert statuses == [200] * 20
    entry = listed(await cli(gateway, "keys", "list", "--json"), "slow-app")
    assert (entry["rate"], entry["burst"]) == (None, None)


async def test_an_expiring_key_works_until_it_expires(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    upstream.add(RUN_ID, task_run_input())
    before = datetime.now(UTC)
    key = await new_key(gateway, "temp-app", "--expires", "30d")
    after = datetime.now(UTC)
    entry = listed(await cli(gateway, "keys", "list", "--json"), "temp-app")
    assert isinstance(entry["expires_at"], str)
    expires_at = datetime.fromisoformat(entry["expires_at"])
    assert before + timedelta(days=30) <= expires_at <= after + timedelta(days=30)
    assert entry["status"] == "active"
    assert (await gateway.get(RUN, key=key)).status == 200

    # Thirty days pass: the stored expiry is now behind us.
    past = "2020-01-01T00:00:00.000000Z"
    with sqlite3.connect(gateway.settings.storage.database) as db:
        db.execute("UPDATE app_keys SET expires_at = ? WHERE name = 'temp-app'", (past,))
    db.close()

    refused = await until(gateway, key, lambda reply: reply.status == 401)
    assert refused.status == 401
    message = orjson.loads(refused.body)["error"]["message"]
    assert message == f"Unauthorized: this gateway key expired at {past}."
    assert listed(await cli(gateway, "keys", "list", "--json"), "temp-app")["status"] == "expired"
    assert upstream.count() == 1

    await cli(gateway, "keys", "update", "temp-app", "--no-expiry")
    assert (await until(gateway, key, lambda reply: reply.status == 200)).status == 200
    assert listed(await cli(gateway, "keys", "list", "--json"), "temp-app")["expires_at"] is None


async def test_keys_list_shows_the_limits_and_expiry(gateway: Gateway) -> None:
    await cli(gateway, "keys", "create", "limited", "--rate", "2.5", "--burst", "10")
    await cli(gateway, "keys", "create", "temp", "--expires", "12h", "--max-open", "50")
    out = await cli(gateway, "keys", "list")
    rows = {row[0]: row[4:] for row in (re.split(r"\s{2,}", line) for line in out.splitlines())}
    assert rows["NAME"] == [
        "STATUS",
        "EXPIRES",
        "RATE",
        "MAX OPEN",
        "REPLAY",
        "BUDGET (EST. USD)",
        "ALLOW",
    ]
    assert rows["limited"] == [
        "active", "never", "2.5/s burst 10", "none", "off", "none", "all routes"
    ]  # fmt: skip
    temp = listed(await cli(gateway, "keys", "list", "--json"), "temp")
    assert rows["temp"] == ["active", temp["expires_at"], "none", "50", "off", "none", "all routes"]
    assert temp["max_open"] == 50
    await cli(gateway, "keys", "update", "temp", "--no-max-open")
    assert listed(await cli(gateway, "keys", "list", "--json"), "temp")["max_open"] is None


async def test_keys_create_and_update_set_the_replay_mode_and_list_shows_it(
    gateway: Gateway,
) -> None:
    await cli(gateway, "keys", "create", "recorder", "--replay", "record")
    await cli(gateway, "keys", "create", "plain")
    assert listed(await cli(gateway, "keys", "list", "--json"), "recorder")["replay"] == "record"
    assert listed(await cli(gateway, "keys", "list", "--json"), "plain")["replay"] == "off"
    await cli(gateway, "keys", "update", "recorder", "--replay", "replay-only")
    out = await cli(gateway, "keys", "list")
    rows = {row[0]: row[8] for row in (re.split(r"\s{2,}", line) for line in out.splitlines())}
    assert rows == {"NAME": "REPLAY", "app": "off", "plain": "off", "recorder": "replay-only"}
    refused = await run_cli(gateway.config, "keys", "update", "plain", "--replay", "always")
    assert refused.code == 2
    assert "argument --replay: invalid choice: 'always'" in refused.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["keys", "create", "x", "--burst", "5"],
            "--burst needs --rate: a burst is the size of a rate's bucket.",
        ),
        (
            ["keys", "create", "x", "--rate", "0"],
            "Rate 0.0 is not valid: use requests per second, above 0.",
        ),
        (
            ["keys", "create", "x", "--expires", "soon"],
            "Expiry 'soon' is not valid: use a whole number and a unit, such as 90m, 12h, 30d "
            "or 8w (s, m, h, d, w).",
        ),
        (
            ["keys", "update", "app"],
            "Nothing to change: give --allow, --no-allow, --rate, --no-rate, --expires, "
            "--no-expiry, --max-open, --no-max-open, --replay, --budget or --no-budget.",
        ),
        (
            ["keys", "create", "x", "--budget", "5"],
            "--budget and --per go together: a budget is USD per day, week or month.",
        ),
        (
            ["keys", "create", "x", "--budget", "-1", "--per", "day"],
            "Budget -1.0 is not valid: use USD, 0 or more.",
        ),
        (
            ["keys", "update", "app", "--budget", "5", "--per", "day", "--no-budget"],
            "Give --budget or --no-budget, not both.",
        ),
        (
            ["keys", "update", "app", "--max-open", "5", "--no-max-open"],
            "Give --max-open or --no-max-open, not both.",
        ),
        (["keys", "create", "x", "--max-open", "0"], "--max-open must be at least 1, not 0."),
        (
            ["keys", "update", "app", "--rate", "5", "--no-rate"],
            "Give --rate or --no-rate, not both.",
        ),
        (
            ["keys", "update", "app", "--expires", "1d", "--no-expiry"],
            "Give --expires or --no-expiry, not both.",
        ),
        (["keys", "update", "nobody", "--rate", "5"], "No app named 'nobody'."),
    ],
)
async def test_bad_limit_and_expiry_options_are_refused(
    gateway: Gateway, args: list[str], message: str
) -> None:
    result = await run_cli(gateway.config, *args)
    assert (result.code, result.out, result.err) == (1, b"", f"parallel-gateway: {message}\n")
    rows = sqlite3.connect(gateway.settings.storage.database).execute(
        "SELECT name, rate, burst, expires_at FROM app_keys ORDER BY name"
    )
    assert rows.fetchall() == [("app", None, None, None)]
