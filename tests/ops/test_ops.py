"""Operations: request ids, /readyz, and /metrics (counts, labels, token, separate port)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import aiohttp
import orjson

from gateway.config import Settings
from gateway.state import DRAINING
from tests.conftest import Gateway, StartGateway, capture_logs, unused_port
from tests.fake_upstream import TEAM_KEY, FakeUpstream, Scripted, error_json, task_run_input

RUN = "/v1/tasks/runs/trun_ops/input"


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a Prometheus exposition, or None if it is absent."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if m is None or m.group(1) != name:
            continue
        got = ",".join(sorted((m.group(2) or "").split(","))) if m.group(2) else ""
        if got == wanted:
            return float(m.group(3))
    return None


async def test_every_answer_names_its_request_id_as_the_access_line_does(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    upstream.add("trun_ops", task_run_input())
    with capture_logs() as logs:
        replies = [
            await gateway.get(RUN),  # a miss
            await gateway.get(RUN),  # a hit
            await gateway.get(RUN, key=None),  # a 401
            await gateway.get("/v1/tasks/runs/trun_x"),  # forwarded
            await gateway.get("/healthz", key=None),
        ]
    ids = [reply.headers["x-gateway-request-id"] for reply in replies]
    access = [line["request_id"] for line in logs if line["event"] == "access"]
    assert ids == access
    assert len(set(ids)) == 5


async def test_readyz_is_ready_and_reports_the_last_upstream_contact(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    first = await gateway.get("/readyz", key=None)
    assert first.status == 200
    assert orjson.loads(first.body) == {
        "status": "ready",
        "draining": False,
        "database": "ok",
        "migrations": "ok",
        "storage": {"writable": True, "reachable": True, "errors": {}, "last_error": None},
        "upstream": {"last_contact": "never"},
    }

    await gateway.get(RUN)  # upstream answers 404: contact made all the same
    after = orjson.loads((await gateway.get("/readyz", key=None)).body)
    assert after["status"] == "ready"
    assert after["upstream"]["last_contact"] == "ok"
    assert after["upstream"]["detail"] == "HTTP 404"


async def test_an_unreachable_upstream_is_reported_but_not_unready(
    start_gateway: StartGateway, make_settings: Callable[..., Settings]
) -> None:
    gateway = await start_gateway(
        make_settings(upstream={"base_url": f"http://127.0.0.1:{unused_port()}", "max_attempts": 1})
    )
    assert (await gateway.get(RUN)).status == 502
    reply = await gateway.get("/readyz", key=None)
    body = orjson.loads(reply.body)
    assert reply.status == 200
    assert body["status"] == "ready"
    assert (body["upstream"]["last_contact"], body["upstream"]["detail"]) == (
        "failed",
        "ClientConnectorError",
    )


async def test_a_draining_gateway_is_not_ready(gateway: Gateway) -> None:
    gateway.server.app[DRAINING][0] = True
    reply = await gateway.get("/readyz", key=None)
    assert reply.status == 503
    assert orjson.loads(reply.body)["status"] == "not-ready"


async def metrics_text(gateway: Gateway, **headers: str) -> tuple[int, str]:
    reply = await gateway.get("/metrics", key=None, **headers)
    return reply.status, reply.body.decode()


async def test_metrics_count_requests_upstream_calls_waits_and_errors(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    upstream.add("trun_ops", task_run_input())
    upstream.delay = 0.1
    await asyncio.gather(*(gateway.get(RUN) for _ in range(5)))  # 1 stored, 4 collapsed
    await gateway.get(RUN)  # a hit
    await gateway.get(RUN, key=None)  # a 401

    status, text = await metrics_text(gateway)

    assert status == 200
    route = "tasks.runs.input"
    assert sample(text, "gateway_requests_total", route=route, status="200", app="app",
                  cache="hit") == 1.0  # fmt: skip
    assert sample(text, "gateway_requests_total", route=route, status="200", app="app",
                  cache="fwd=uri-miss; stored") == 1.0  # fmt: skip
    assert sample(text, "gateway_requests_total", route=route, status="200", app="app",
                  cache="fwd=uri-miss; stored; collapsed") == 4.0  # fmt: skip
    assert sample(text, "gateway_requests_total", route=route, status="401", app="",
                  cache="detail=unauthenticated") == 1.0  # fmt: skip
    assert sample(text, "gateway_upstream_requests_total", route=route, status="200") == 1.0
    assert sample(text, "gateway_upstream_seconds_count", route=route) == 1.0
    assert sample(text, "gateway_singleflight_waits_total") == 4.0
    assert sample(text, "gateway_errors_total", kind="unauthenticated") == 1.0
    assert sample(text, "gateway_overhead_seconds_count", route=route) == 7.0
    body_size = float(len(upstream.inputs["trun_ops"]))
    assert sample(text, "gateway_memory_entries") == 1.0
    assert sample(text, "gateway_memory_bytes") == body_size
    assert sample(text, "gateway_cache_entries") == 1.0
    assert sample(text, "gateway_cache_bytes") == body_size
    assert TEAM_KEY not in text
    assert gateway.app_key not in text


async def test_retries_are_counted(gateway: Gateway, upstream: FakeUpstream) -> None:
    upstream.add("trun_ops", task_run_input())
    upstream.script.append(Scripted(503, error_json("busy")))
    assert (await gateway.get(RUN)).status == 200
    _, text = await metrics_text(gateway)
    route = "tasks.runs.input"
    assert sample(text, "gateway_upstream_retries_total", route=route) == 1.0
    assert sample(text, "gateway_upstream_requests_total", route=route, status="503") == 1.0
    assert sample(text, "gateway_upstream_requests_total", route=route, status="200") == 1.0


async def test_a_metrics_token_guards_metrics(
    start_gateway: StartGateway, make_settings: Callable[..., Settings]
) -> None:
    gateway = await start_gateway(make_settings(metrics={"token": "scrape-secret"}))
    status, text = await metrics_text(gateway)
    assert status == 401
    assert orjson.loads(text)["error"]["message"] == (
        "Unauthorized: /metrics needs Authorization: Bearer <token>."
    )
    assert (await metrics_text(gateway, authorization="Bearer wrong"))[0] == 401
    status, text = await metrics_text(gateway, authorization="Bearer scrape-secret")
    assert status == 200
    assert "gateway_requests_total" in text


async def test_metrics_on_their_own_port_are_not_on_the_main_one(
    start_gateway: StartGateway, make_settings: Callable[..., Settings]
) -> None:
    port = unused_port()
    gateway = await start_gateway(make_settings(metrics={"port": port}))
    main = await gateway.get("/metrics")
    assert main.status == 404
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as resp,
    ):
        assert resp.status == 200
        assert "gateway_requests_total" in await resp.text()


async def test_a_request_arriving_while_draining_gets_503(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    gateway.server.app[DRAINING][0] = True
    reply = await gateway.get(RUN)
    assert reply.status == 503
    assert orjson.loads(reply.body)["error"]["message"] == (
        "The gateway is shutting down; retry on another instance."
    )
    assert reply.headers["Connection"] == "close"
    assert upstream.count() == 0
