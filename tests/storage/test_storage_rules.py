"""What is stored, what is not, and that stored means committed and survives a restart."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import orjson
import pytest

from gateway.config import Settings
from tests.conftest import Gateway, StartGateway, capture_logs
from tests.fake_upstream import FakeUpstream, Scripted, task_run_input

RUN = "/v1/tasks/runs/trun_store/input"


def stored_rows(database: str) -> list[tuple[str, bytes, int]]:
    """Read the table through a separate connection: only committed rows are visible."""
    with sqlite3.connect(database) as conn:
        return conn.execute("SELECT run_id, body, size FROM run_inputs").fetchall()


NOT_JSON_200S = {
    "html": b"<html>oops</html>",
    "truncated-json": b'{"processor": "core", "inp',
    "empty": b"",
}
BAD_200S = {
    "json-array": b'[{"processor": "core", "input": "x"}]',
    "no-input": b'{"processor": "core"}',
    "no-processor": b'{"input": "x"}',
    "json-string": b'"processor input"',
}


@pytest.mark.parametrize("body", BAD_200S.values(), ids=BAD_200S.keys())
async def test_malformed_200_is_passed_through_but_never_stored(
    gateway: Gateway, upstream: FakeUpstream, body: bytes
) -> None:
    upstream.script.append(Scripted(200, body, {"content-type": "application/json"}))
    upstream.script.append(Scripted(200, body, {"content-type": "application/json"}))

    first = await gateway.get(RUN)
    second = await gateway.get(RUN)

    assert (first.status, first.body) == (200, body)
    assert first.headers["Cache-Status"] == "parallel-gateway; fwd=uri-miss"
    assert second.headers["Cache-Status"] == "parallel-gateway; fwd=uri-miss"
    assert upstream.count() == 2
    assert stored_rows(gateway.settings.storage.database) == []


@pytest.mark.parametrize("body", NOT_JSON_200S.values(), ids=NOT_JSON_200S.keys())
async def test_a_200_that_is_not_json_gets_502_and_is_never_stored(
    gateway: Gateway, upstream: FakeUpstream, body: bytes
) -> None:
    upstream.script.append(Scripted(200, body, {"content-type": "application/json"}))
    upstream.script.append(Scripted(200, body, {"content-type": "application/json"}))

    with capture_logs() as logs:
        first = await gateway.get(RUN)
    second = await gateway.get(RUN)

    assert first.status == 502
    error = orjson.loads(first.body)
    assert error == {
        "type": "error",
        "error": {
            "ref_id": error["error"]["ref_id"],
            "message": "Parallel API answered 200 for run trun_store with a body that is not "
            "JSON; it was not stored.",
            "detail": None,
        },
    }
    assert first.headers["Content-Type"] == "application/json"
    assert first.headers["Cache-Status"] == (
        "parallel-gateway; fwd=uri-miss; detail=upstream-invalid"
    )
    assert second.status == 502
    assert upstream.count() == 2
    assert stored_rows(gateway.settings.storage.database) == []
    logged = [
        (e["event"], e.get("reason")) for e in logs if e.get("ref_id") == error["error"]["ref_id"]
    ]
    assert logged == [("cache.not_stored", "not-json"), ("gateway.error", "upstream-invalid")]


async def test_errors_are_never_stored(gateway: Gateway, upstream: FakeUpstream) -> None:
    assert (await gateway.get(RUN)).status == 404
    assert (await gateway.get(RUN)).status == 404
    assert upstream.count() == 2
    assert stored_rows(gateway.settings.storage.database) == []


async def test_body_over_the_limit_is_passed_through_not_stored(
    start_gateway: StartGateway, make_settings: Callable[..., Settings], upstream: FakeUpstream
) -> None:
    gateway = await start_gateway(make_settings(cache={"max_body_bytes": 1000}))
    body = upstream.add("trun_store", task_run_input(input="x" * 2000))

    first = await gateway.get(RUN)
    second = await gateway.get(RUN)

    assert (first.status, first.body, second.body) == (200, body, body)
    assert second.headers["Cache-Status"] == "parallel-gateway; fwd=uri-miss"
    assert upstream.count() == 2
    assert stored_rows(gateway.settings.storage.database) == []


async def test_stored_means_committed_byte_for_byte(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    # Unusual spacing, key order and unicode: the body is kept exactly as received.
    body = upstream.add(
        "trun_store", '{ "input" : "Ünïcode ☃",\n "processor":"base", "x":1}'.encode()
    )

    reply = await gateway.get(RUN)

    assert reply.headers["Cache-Status"] == "parallel-gateway; fwd=uri-miss; stored"
    assert reply.body == body
    assert stored_rows(gateway.settings.storage.database) == [("trun_store", body, len(body))]


async def test_stored_input_is_served_after_restart_with_upstream_stopped(
    start_gateway: StartGateway,
    make_settings: Callable[..., Settings],
    upstream: FakeUpstream,
) -> None:
    settings = make_settings()
    first = await start_gateway(settings)
    body = upstream.add("trun_store", task_run_input(5))
    assert (await first.get(RUN)).headers["Cache-Status"] == (
        "parallel-gateway; fwd=uri-miss; stored"
    )
    await first.server.close()
    await upstream.stop()

    second = await start_gateway(settings, app="second-app")
    reply = await second.get(RUN)

    assert (reply.status, reply.body) == (200, body)
    assert reply.headers["Cache-Status"] == "parallel-gateway; hit"
    assert orjson.loads(reply.body) == task_run_input(5)
    assert upstream.count() == 1
