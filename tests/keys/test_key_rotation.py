"""Key rotation, deletion and dead keys against a serving gateway, the CLI run beside it."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from contextlib import closing
from typing import Any

import orjson
import pytest
from parallel import AsyncParallel, AuthenticationError

from tests.conftest import Gateway, capture_logs, run_cli
from tests.fake_upstream import FakeUpstream, task_run_input
from tests.keys.test_key_lifecycle import RUN, RUN_ID, cli, new_key, until
from tests.ops.test_ops import metrics_text, sample

PAST = "2020-01-01T00:00:00.000000Z"
RETRIEVE = f"/v1/tasks/runs/{RUN_ID}"


def set_column(gateway: Gateway, sql: str) -> None:
    """Move time on behind the gateway's back (a grace period or an expiry has passed)."""
    with closing(sqlite3.connect(gateway.settings.storage.database)) as db, db:
        db.execute(sql, (PAST,))


def refusals(logs: Sequence[Mapping[str, Any]]) -> list[tuple[object, ...]]:
    """(event, status, app, route or message) of each access and gateway.error line."""
    return [
        (line["event"], line["status"], line["app"], line.get("route", line.get("message")))
        for line in logs
        if line["event"] in ("access", "gateway.error")
    ]


async def rotate(gateway: Gateway, name: str, *options: str) -> str:
    key = (await cli(gateway, "keys", "rotate", name, *options)).strip()
    await until(gateway, key, lambda reply: reply.status != 401)
    return key


async def test_with_grace_both_keys_work_as_one_app_then_the_old_one_stops(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    upstream.add(RUN_ID, task_run_input())
    # One token every 1,000 s, four at once: both keys draw on the app's one bucket, which
    # new_key's and rotate's first good calls have taken two of.
    old = await new_key(gateway, "billing", "--rate", "0.001", "--burst", "4")
    new = await rotate(gateway, "billing", "--grace", "1h")
    with capture_logs() as logs:
        for key in (old, new):
            async with AsyncParallel(api_key=key, base_url=gateway.url, max_retries=0) as sdk:
                assert (await sdk.task_run.retrieve_input(RUN_ID)).to_dict() == task_run_input()
        assert (await gateway.get(RUN, key=old)).status == 429  # the app's bucket is empty
    assert [(line["status"], line["app"]) for line in logs if line["event"] == "access"] == [
        (200, "billing"), (200, "billing"), (429, "billing"),
    ]  # fmt: skip
    _, text = await metrics_text(gateway)
    assert sample(text, "gateway_requests_total", route="tasks.runs.input", status="200",
                  app="billing", cache="hit") == 3.0  # fmt: skip

    set_column(gateway, "UPDATE retired_keys SET retires_at = ?")  # the hour has passed
    reply = await until(gateway, old, lambda reply: reply.status == 401)
    message = (
        f"Unauthorized: this gateway key was replaced by a new one and stopped working at {PAST}."
    )
    assert orjson.loads(reply.body)["error"]["message"] == message
    with capture_logs() as logs:
        async with AsyncParallel(api_key=old, base_url=gateway.url, max_retries=0) as sdk:
            with pytest.raises(AuthenticationError):
                await sdk.task_run.retrieve_input(RUN_ID)
    assert refusals(logs) == [
        ("gateway.error", 401, "billing", message),
        ("access", 401, "billing", "tasks.runs.input"),
    ]
    assert upstream.count() == 1


async def test_without_grace_the_old_key_stops_and_revoke_stops_both(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    upstream.add(RUN_ID, task_run_input())
    old = await new_key(gateway, "billing")
    new = await rotate(gateway, "billing", "--grace", "1h")
    newest = await rotate(gateway, "billing")
    assert (await until(gateway, new, lambda reply: reply.status == 401)).status == 401
    assert (await gateway.get(RUN, key=old)).status == 200  # its own hour is not over

    await cli(gateway, "keys", "revoke", "billing")

    for key in (old, new, newest):
        reply = await until(gateway, key, lambda reply: reply.status == 401)
        message = orjson.loads(reply.body)["error"]["message"]
        assert message == "Unauthorized: this gateway key has been revoked."


async def test_a_dead_keys_refusals_name_its_app_and_route(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    """On the hit path (the run is in memory) and the full stack alike."""
    upstream.add(RUN_ID, task_run_input())
    assert (await gateway.get(RUN)).status == 200  # in memory now: a hit for a live key
    expired = await new_key(gateway, "ci", "--expires", "1d")
    set_column(gateway, "UPDATE app_keys SET expires_at = ? WHERE name = 'ci'")
    await until(gateway, expired, lambda reply: reply.status == 401)
    await cli(gateway, "keys", "revoke", "app")
    await until(gateway, gateway.app_key, lambda reply: reply.status == 401)
    unknown = "pgw_" + "0" * 43
    revoked = "Unauthorized: this gateway key has been revoked."
    expired_message = f"Unauthorized: this gateway key expired at {PAST}."
    invalid = "Unauthorized: invalid gateway key."

    with capture_logs() as logs:
        for key in (gateway.app_key, expired, unknown):
            for path in (RUN, RETRIEVE):
                assert (await gateway.get(path, key=key)).status == 401

    input_route, retrieve = "tasks.runs.input", "tasks.runs.retrieve"
    assert refusals(logs) == [
        ("gateway.error", 401, "app", revoked), ("access", 401, "app", input_route),
        ("gateway.error", 401, "app", revoked), ("access", 401, "app", retrieve),
        ("gateway.error", 401, "ci", expired_message), ("access", 401, "ci", input_route),
        ("gateway.error", 401, "ci", expired_message), ("access", 401, "ci", retrieve),
        ("gateway.error", 401, None, invalid), ("access", 401, None, input_route),
        ("gateway.error", 401, None, invalid), ("access", 401, None, retrieve),
    ]  # fmt: skip
    assert upstream.count() == 1


async def test_a_refusal_before_routing_names_a_catalogued_route_only(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    limited = await new_key(gateway, "limited", "--allow", "GET /v1/tasks/runs/*/input")
    before = upstream.count()
    with capture_logs() as logs:
        assert (await gateway.get(RETRIEVE, key=limited)).status == 403
        assert (await gateway.get(RETRIEVE + "/", key=limited)).status == 403
        assert (await gateway.get("/v1/tasks/runs/a%2Fb", key=None)).status == 401
    assert [
        (line["status"], line["app"], line["route"]) for line in logs if line["event"] == "access"
    ] == [(403, "limited", "tasks.runs.retrieve"), (403, "limited", None), (401, None, None)]
    assert upstream.count() == before


async def test_a_deleted_apps_name_is_taken_by_a_new_app(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    upstream.add(RUN_ID, task_run_input())
    old = await new_key(gateway, "temp-app")
    await cli(gateway, "keys", "revoke", "temp-app")
    taken = await run_cli(gateway.config, "keys", "create", "temp-app")
    assert (taken.code, taken.out) == (1, b"")
    assert "`parallel-gateway keys delete temp-app --yes` frees it." in taken.err

    await cli(gateway, "keys", "delete", "temp-app", "--yes")
    new = await new_key(gateway, "temp-app")

    async with AsyncParallel(api_key=new, base_url=gateway.url, max_retries=0) as sdk:
        assert (await sdk.task_run.retrieve_input(RUN_ID)).to_dict() == task_run_input()
    with capture_logs() as logs:
        reply = await gateway.get(RUN, key=old)
    assert orjson.loads(reply.body)["error"]["message"] == "Unauthorized: invalid gateway key."
    assert refusals(logs)[1] == ("access", 401, None, "tasks.runs.input")
