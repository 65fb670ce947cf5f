"""The official SDK, pointed at the gateway, against the fake upstream."""

from __future__ import annotations

import orjson
import pytest
from parallel import AsyncParallel, NotFoundError

from tests.conftest import Gateway, capture_logs
from tests.fake_upstream import TEAM_KEY, FakeUpstream, task_run_input

RUN_ID = "trun_9907962f83aa4d9d98fd7f4bf745d654"


async def test_miss_then_hit_returns_upstream_input(
    gateway: Gateway, upstream: FakeUpstream, sdk: AsyncParallel
) -> None:
    upstream.add(RUN_ID, task_run_input(7, advanced_settings={"future": ["field"]}))

    first = await sdk.task_run.with_raw_response.retrieve_input(RUN_ID)
    second = await sdk.task_run.with_raw_response.retrieve_input(RUN_ID)

    assert first.headers["cache-status"] == "parallel-gateway; fwd=uri-miss; stored"
    assert second.headers["cache-status"] == "parallel-gateway; hit"
    assert first.status_code == second.status_code == 200
    assert second.headers["content-type"] == "application/json"
    parsed = await second.parse()
    assert parsed.processor == "core"
    assert parsed.input == {"country": "France", "year": 2030}
    assert parsed.to_dict() == task_run_input(7, advanced_settings={"future": ["field"]})
    assert upstream.count(RUN_ID) == 1


async def test_retrieve_input_equals_upstream_body(
    gateway: Gateway, upstream: FakeUpstream, sdk: AsyncParallel
) -> None:
    upstream.add(RUN_ID, task_run_input(1))
    run_input = await sdk.task_run.retrieve_input(RUN_ID)
    again = await sdk.task_run.retrieve_input(RUN_ID)
    assert run_input.to_dict() == again.to_dict() == task_run_input(1)
    assert upstream.count() == 1


async def test_upstream_sees_only_the_team_key(
    gateway: Gateway, upstream: FakeUpstream, sdk: AsyncParallel
) -> None:
    upstream.add(RUN_ID, task_run_input())
    with capture_logs() as logs:
        await sdk.task_run.retrieve_input(RUN_ID)
        with pytest.raises(NotFoundError):
            await sdk.task_run.retrieve_input("trun_missing")
        bearer = await gateway.get(
            "/v1/tasks/runs/trun_other/input", key=None, authorization=f"Bearer {gateway.app_key}"
        )
    assert bearer.status == 404
    assert [r.headers.get("x-api-key") for r in upstream.requests] == [TEAM_KEY] * 3
    assert all("Authorization" not in r.headers for r in upstream.requests)
    assert all(gateway.app_key not in repr(r.headers) for r in upstream.requests)
    assert TEAM_KEY not in repr(logs)
    assert gateway.app_key not in repr(logs)
    assert TEAM_KEY.encode() not in bearer.body


async def test_upstream_404_reaches_sdk_with_its_ref_id(
    gateway: Gateway, upstream: FakeUpstream, sdk: AsyncParallel
) -> None:
    with capture_logs() as logs, pytest.raises(NotFoundError) as caught:
        await sdk.task_run.retrieve_input("trun_nope")

    body = caught.value.body
    assert isinstance(body, dict)
    ref_id = body["error"]["ref_id"]
    assert body["error"]["message"] == "Run id not found"
    assert caught.value.response.headers["cache-status"] == (
        "parallel-gateway; fwd=uri-miss; fwd-status=404"
    )
    errors = [e for e in logs if e["event"] == "upstream.error"]
    assert errors == [
        {
            "event": "upstream.error",
            "log_level": "warning",
            "status": 404,
            "ref_id": ref_id,
            "ref_id_by": "upstream",
            "message": "Run id not found",
            "route": "tasks.runs.input",
            "run_id": "trun_nope",
            "attempt": 1,
            "app": "app",
            "request_id": errors[0]["request_id"],
        }
    ]
    assert upstream.count("trun_nope") == 1


async def test_upstream_error_body_passes_through_unchanged(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    reply = await gateway.get("/v1/tasks/runs/trun_gone/input")
    assert reply.status == 404
    assert orjson.loads(reply.body)["error"]["message"] == "Run id not found"
    assert reply.headers["Content-Type"] == "application/json"
