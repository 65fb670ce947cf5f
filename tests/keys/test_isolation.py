"""[isolation] mode = "app": an app reads only the runs and groups it created or was granted."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler
from parallel import AsyncParallel, NotFoundError
from parallel.types import TaskRunEvent

from gateway.config import Settings
from tests.conftest import capture_logs, run_cli
from tests.fake_upstream import TEAM_KEY
from tests.passthrough_support import (
    HIT,
    STORED,
    Harness,
    ServerFactory,
    Start,
    WatchedParallel,
    error_of,
)
from tests.passthrough_support import start as start  # the fixture, with upstream
from tests.passthrough_support import upstream as upstream  # FakeParallel

NOT_FOUND = "Run id not found"
APPS = ("A", "B")


@pytest.fixture
async def isolated(start: Start, make_settings: Callable[..., Settings]) -> Harness:
    """A gateway in app mode, with keys for apps A and B."""
    return await start(make_settings(isolation={"mode": "app"}), apps=APPS)


async def grant(gw: Harness, resource_id: str, app: str) -> None:
    result = await run_cli(gw.gateway.config, "runs", "grant", resource_id, app)
    assert (result.code, result.out) == (0, b"")
    assert result.err == f"App {app!r} may now read {resource_id}.\n"


async def assert_not_found(gw: Harness, app: str, raw_path: str) -> None:
    """`app` gets the unknown-run answer, and nothing goes upstream."""
    before = len(gw.fake.started)
    reply = await gw.request("GET", raw_path, app=app)
    assert gw.fake.started[before:] == []
    assert reply.status == 404, (raw_path, reply.body)
    error = error_of(reply.body)
    assert (error["message"], error["detail"]) == (NOT_FOUND, None)


async def create_run_directly(fake: WatchedParallel) -> str:
    """A run made with the team key straight at Parallel, not through the gateway."""
    async with AsyncParallel(api_key=TEAM_KEY, base_url=fake.base_url, max_retries=0) as direct:
        run = await direct.task_run.create(input="made elsewhere", processor="lite")
    return run.run_id


async def test_another_apps_run_is_not_found_until_granted(isolated: Harness) -> None:
    gw = isolated
    a, b = gw.sdk("A"), gw.sdk("B")
    run = await a.task_run.create(input="What is GDP?", processor="lite")
    rid = run.run_id
    after_create = len(gw.fake.exchanges)

    with capture_logs() as logs, pytest.raises(NotFoundError) as caught:
        await b.task_run.retrieve_input(rid)
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["message"] == NOT_FOUND
    assert caught.value.response.headers["cache-status"] == (
        "parallel-gateway; detail=run-not-found"
    )
    assert [
        (line["route"], line["status"], line["app"]) for line in logs if line["event"] == "access"
    ] == [("tasks.runs.input", 404, "B")]
    with pytest.raises(NotFoundError) as caught:
        await b.task_run.result(rid, api_timeout=5)
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["message"] == NOT_FOUND
    cache_status = caught.value.response.headers["cache-status"]
    assert cache_status == "parallel-gateway; fwd=bypass; detail=run-not-found"
    for suffix in ("/input", "/result", "", "/events"):
        await assert_not_found(gw, "B", f"/v1/tasks/runs/{rid}{suffix}")
    assert len(gw.fake.exchanges) == after_create

    raw = await a.task_run.with_raw_response.retrieve_input(rid)
    assert raw.headers["cache-status"] == STORED
    assert (await raw.parse()).input == "What is GDP?"
    assert (await a.task_run.result(rid)).run.run_id == rid
    assert [e.type async for e in await a.task_run.events(rid)] == [
        "task_run.state",
        "task_run.progress_msg.exec_status",
        "task_run.progress_stats",
        "task_run.state",
    ]

    await grant(gw, rid, "B")
    raw = await b.task_run.with_raw_response.retrieve_input(rid)
    assert raw.headers["cache-status"] == HIT
    assert (await raw.parse()).input == "What is GDP?"
    result = await b.task_run.with_raw_response.result(rid)
    assert result.headers["cache-status"] == HIT  # A's result, stored; B may read the run now
    assert (await result.parse()).run.run_id == rid
    assert (await b.task_run.retrieve(rid)).run_id == rid
    assert [(e.method, e.raw_path) for e in gw.fake.exchanges[after_create:]] == [
        ("GET", f"/v1/tasks/runs/{rid}/input"),
        ("GET", f"/v1/tasks/runs/{rid}/result"),
        ("GET", f"/v1/tasks/runs/{rid}/events"),
        ("GET", f"/v1/tasks/runs/{rid}"),
    ]


async def test_runs_list_shows_who_may_read_and_runs_revoke_takes_it_back(
    isolated: Harness,
) -> None:
    gw = isolated
    a, b = gw.sdk("A"), gw.sdk("B")
    rid = (await a.task_run.create(input="What is GDP?", processor="lite")).run_id
    await grant(gw, rid, "B")
    assert (await b.task_run.retrieve_input(rid)).input == "What is GDP?"
    listed = await run_cli(gw.gateway.config, "runs", "list", "--json")
    assert [(r["id"], r["app"], r["how"]) for r in map(orjson.loads, listed.out.splitlines())] == [
        (rid, "A", "created"),
        (rid, "B", "granted"),
    ]
    before = len(gw.fake.exchanges)

    revoked = await run_cli(gw.gateway.config, "runs", "revoke", rid, "B")

    assert (revoked.code, revoked.out) == (0, b"")
    assert revoked.err == f"App 'B' may no longer read {rid}: its grant was removed.\n"
    with pytest.raises(NotFoundError) as caught:
        await b.task_run.retrieve_input(rid)  # in the cache, and still refused
    assert caught.value.response.headers["cache-status"] == (
        "parallel-gateway; detail=run-not-found"
    )
    await assert_not_found(gw, "B", f"/v1/tasks/runs/{rid}/result")
    assert (await a.task_run.retrieve_input(rid)).input == "What is GDP?"

    await run_cli(gw.gateway.config, "runs", "revoke", rid, "A")
    await assert_not_found(gw, "A", f"/v1/tasks/runs/{rid}/input")
    assert len(gw.fake.exchanges) == before


async def test_another_apps_task_group_is_not_found_until_granted(isolated: Harness) -> None:
    gw = isolated
    a, b = gw.sdk("A"), gw.sdk("B")
    group = await a.task_group.create(metadata={"owner": "A"})
    gid = group.task_group_id
    added = await a.task_group.add_runs(gid, inputs=[{"input": "x", "processor": "lite"}])
    rid = added.run_ids[0]
    after_create = len(gw.fake.exchanges)

    with pytest.raises(NotFoundError) as caught:
        await b.task_group.retrieve(gid)
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["message"] == NOT_FOUND
    with pytest.raises(NotFoundError):
        await b.task_group.get_runs(gid)
    with pytest.raises(NotFoundError):
        await b.task_group.add_runs(gid, inputs=[{"input": "y", "processor": "lite"}])
    for raw_path in (
        f"/v1/tasks/groups/{gid}",
        f"/v1/tasks/groups/{gid}/runs",
        f"/v1/tasks/groups/{gid}/events",
        f"/v1/tasks/groups/{gid}/runs/{rid}",
        f"/v1/tasks/runs/{rid}/input",  # a run added to A's group is A's
        f"/v1/tasks/runs/{rid}/result",
    ):
        await assert_not_found(gw, "B", raw_path)
    assert len(gw.fake.exchanges) == after_create
    assert len(gw.fake.groups[gid].run_ids) == 1

    assert (await a.task_group.retrieve(gid)).metadata == {"owner": "A"}
    assert (await a.task_run.retrieve_input(rid)).input == "x"

    await grant(gw, gid, "B")
    assert (await b.task_group.retrieve(gid)).metadata == {"owner": "A"}
    events = [e async for e in await b.task_group.get_runs(gid)]
    assert [e.run.run_id for e in events if isinstance(e, TaskRunEvent)] == [rid]
    assert [(e.method, e.raw_path) for e in gw.fake.exchanges[after_create:]] == [
        ("GET", f"/v1/tasks/groups/{gid}"),
        ("GET", f"/v1/tasks/runs/{rid}/input"),
        ("GET", f"/v1/tasks/groups/{gid}"),
        ("GET", f"/v1/tasks/groups/{gid}/runs"),
    ]


async def test_another_apps_findall_run_is_not_found_until_granted(isolated: Harness) -> None:
    gw = isolated
    a, b = gw.sdk("A"), gw.sdk("B")
    run = await a.beta.findall.create(
        entity_type="companies",
        generator="core",
        match_conditions=[{"name": "saas", "description": "Sells software"}],
        match_limit=5,
        objective="SaaS companies",
    )
    fid = run.findall_id
    after_create = len(gw.fake.exchanges)

    with pytest.raises(NotFoundError):
        await b.beta.findall.retrieve(fid)
    with pytest.raises(NotFoundError):
        await b.beta.findall.result(fid)
    for raw_path in (f"/v1beta/findall/runs/{fid}/events", f"/v1beta/findall/runs/{fid}/schema"):
        await assert_not_found(gw, "B", raw_path)
    assert len(gw.fake.exchanges) == after_create

    assert (await a.beta.findall.retrieve(fid)).findall_id == fid
    await grant(gw, fid, "B")
    assert (await b.beta.findall.retrieve(fid)).findall_id == fid
    assert [(e.method, e.raw_path) for e in gw.fake.exchanges[after_create:]] == [
        ("GET", f"/v1beta/findall/runs/{fid}"),
        ("GET", f"/v1beta/findall/runs/{fid}"),
    ]


async def test_a_granted_group_does_not_open_another_apps_run_through_its_path(
    isolated: Harness,
) -> None:
    gw = isolated
    a, b = gw.sdk("A"), gw.sdk("B")
    run = await a.task_run.create(input="A's own", processor="lite")
    group = await b.task_group.create()
    await assert_not_found(gw, "B", f"/v1/tasks/groups/{group.task_group_id}/runs/{run.run_id}")


async def test_team_mode_shares_every_run(start: Start) -> None:
    gw = await start(apps=APPS)
    a, b = gw.sdk("A"), gw.sdk("B")
    run = await a.task_run.create(input="shared", processor="lite")
    group = await a.task_group.create()

    assert (await b.task_run.retrieve_input(run.run_id)).input == "shared"
    assert (await b.task_run.result(run.run_id)).run.run_id == run.run_id
    assert (await b.task_run.retrieve(run.run_id)).run_id == run.run_id
    assert (await b.task_group.retrieve(group.task_group_id)).task_group_id == group.task_group_id
    assert len(gw.fake.exchanges) == 6


async def test_a_run_made_outside_the_gateway_is_nobodys_until_granted(
    isolated: Harness,
) -> None:
    gw = isolated
    rid = await create_run_directly(gw.fake)
    made = len(gw.fake.exchanges)
    for app in APPS:
        for suffix in ("/input", "/result", ""):
            await assert_not_found(gw, app, f"/v1/tasks/runs/{rid}{suffix}")
    assert len(gw.fake.exchanges) == made

    await grant(gw, rid, "A")
    assert (await gw.sdk("A").task_run.retrieve_input(rid)).input == "made elsewhere"
    assert (await gw.sdk("A").task_run.result(rid)).run.run_id == rid
    for suffix in ("/input", "/result"):
        await assert_not_found(gw, "B", f"/v1/tasks/runs/{rid}{suffix}")


async def test_granting_twice_and_to_an_unknown_app(isolated: Harness) -> None:
    rid = await create_run_directly(isolated.fake)
    await grant(isolated, rid, "B")
    again = await run_cli(isolated.gateway.config, "runs", "grant", rid, "B")
    assert (again.code, again.err) == (0, f"App 'B' could already read {rid}.\n")
    unknown = await run_cli(isolated.gateway.config, "runs", "grant", rid, "nobody")
    assert (unknown.code, unknown.err) == (1, "parallel-gateway: No app named 'nobody'.\n")


async def test_upstream_is_asked_for_uncompressed_answers(
    start: Start, make_settings: Callable[..., Settings], aiohttp_server: ServerFactory
) -> None:
    """Created ids are read from the create answer, so it must not come back compressed."""

    @web.middleware
    async def compress(request: web.Request, handler: Handler) -> web.StreamResponse:
        # Parallel, like most HTTP APIs, may compress when asked to; FakeParallel never does.
        response = await handler(request)
        if isinstance(response, web.Response):
            response.enable_compression()
        return response

    fake = WatchedParallel()
    fake.app.middlewares.insert(0, compress)
    await fake.listen(aiohttp_server)
    settings = make_settings(isolation={"mode": "app"}, upstream={"base_url": fake.base_url})
    gw = await start(settings, apps=APPS, upstream=fake)
    a = gw.sdk("A")

    raw = await a.task_run.with_raw_response.create(input="q", processor="lite")
    rid = (await raw.parse()).run_id
    assert "content-encoding" not in raw.headers
    assert "accept-encoding" not in fake.exchanges[0].headers  # the SDK sent gzip, deflate
    assert (await a.task_run.retrieve_input(rid)).input == "q"
    assert (await a.task_run.retrieve(rid)).run_id == rid


@pytest.mark.parametrize(
    "template",
    [
        "/v1/tasks/r%75ns/{run}/result",
        "/v1/t%61sks/runs/{run}",
        "/v1/tasks/runs/{run}/%72esult",
        "/v1/tasks/groups/{group}/%72uns",
    ],
)
async def test_an_equivalent_spelling_of_another_apps_run_is_not_forwarded(
    isolated: Harness, template: str
) -> None:
    gw = isolated
    a = gw.sdk("A")
    run = await a.task_run.create(input="secret", processor="lite")
    group = await a.task_group.create()
    raw_path = template.format(run=run.run_id, group=group.task_group_id)
    before = len(gw.fake.started)
    reply = await gw.request("GET", raw_path, app="B")
    assert gw.fake.started[before:] == []
    assert reply.status == 400
    assert error_of(reply.body)["message"] == (
        "Request validation error: the path may not percent-encode letters, digits or -._~."
    )
