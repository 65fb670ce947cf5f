"""The team key from upstream.api_key_file: read at start, rotated on change or SIGHUP."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import orjson
import pytest

from gateway.config import Settings
from gateway.upstream.team_key import TeamKeyError, read_key_file, team_key_from
from tests.conftest import Gateway, StartGateway, capture_logs, eventually, run_cli
from tests.fake_upstream import TEAM_KEY, FakeUpstream, Scripted, error_json, task_run_input
from tests.http.test_serve import ServeProcess
from tests.http.test_serve import serve as serve  # the fixture

NEW_KEY = "team-secret-key-rotated-fedcba9876543210"


def write_key(path: Path, key: str) -> None:
    """Replace the file in one step, as Kubernetes and careful tools do."""
    staged = path.with_suffix(".new")
    staged.write_text(key + "\n")
    os.replace(staged, path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"abc", "abc"),
        (b"abc\n", "abc"),
        (b"  abc \r\n\n", "abc"),
        (TEAM_KEY.encode(), TEAM_KEY),
    ],
)
def test_read_key_file(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "key"
    path.write_bytes(content)
    assert read_key_file(str(path)) == expected


ONE_KEY = (
    "which does not hold one key: expected 1 to 4096 printable characters with no spaces, "
    "on one line."
)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"", ONE_KEY),
        (b" \n\n", ONE_KEY),
        (b"two words", ONE_KEY),
        (b"line1\nline2\n", ONE_KEY),
        (b"tab\tinside", ONE_KEY),
        (b"x" * 4097, ONE_KEY),
        ("caf\u00e9".encode(), "which holds bytes that are not ASCII."),
        (None, "which cannot be read: No such file or directory."),
    ],
)
def test_a_bad_key_file_is_refused_clearly(tmp_path: Path, content: bytes | None, why: str) -> None:
    path = tmp_path / "key"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(TeamKeyError) as e:
        read_key_file(str(path))
    assert str(e.value) == f"Config 'upstream.api_key_file' names '{path}', {why}"


def test_the_key_file_wins_over_the_environment(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    path = tmp_path / "key"
    write_key(path, NEW_KEY)
    env = {"PARALLEL_API_KEY": TEAM_KEY}
    assert team_key_from(make_settings(), env) == TEAM_KEY
    assert team_key_from(make_settings(upstream={"api_key_file": str(path)}), env) == NEW_KEY


StartWithKeyFile = Callable[[float], Awaitable[tuple[Gateway, Path]]]


@pytest.fixture
def start_with_key_file(
    tmp_path: Path, start_gateway: StartGateway, make_settings: Callable[..., Settings]
) -> StartWithKeyFile:
    """A gateway reading the team key from a file (holding TEAM_KEY), checked this often."""

    async def start(interval: float) -> tuple[Gateway, Path]:
        key_file = tmp_path / "team-key"
        write_key(key_file, TEAM_KEY)
        settings = make_settings(
            upstream={"api_key_file": str(key_file), "api_key_file_interval": interval}
        )
        return await start_gateway(settings, env={}), key_file

    return start


async def test_a_key_rotated_under_load_fails_no_request(
    start_with_key_file: StartWithKeyFile, upstream: FakeUpstream
) -> None:
    gateway, key_file = await start_with_key_file(0.05)
    for n in range(2000):
        upstream.add(f"trun_rot{n}", task_run_input(n))
    upstream.team_keys = {TEAM_KEY, NEW_KEY}  # Parallel: both valid while the secret rolls
    runs = iter(range(2000))
    statuses: list[int] = []
    started_after_switch: set[int] = set()
    switched = asyncio.Event()
    stop = asyncio.Event()

    async def client(worker: int) -> None:
        while not stop.is_set():
            after_switch = switched.is_set()
            reply = await gateway.get(f"/v1/tasks/runs/trun_rot{next(runs)}/input")
            statuses.append(reply.status)
            if after_switch:
                started_after_switch.add(worker)

    async def rotate() -> int:
        await eventually(lambda: len(statuses) >= 100, within=10)
        write_key(key_file, NEW_KEY)
        await eventually(lambda: any(r.headers["x-api-key"] == NEW_KEY for r in upstream.requests))
        switched.set()
        # Every client has finished a request begun after the switch: none still holds the old
        # key, so Parallel may now revoke it.
        await eventually(lambda: len(started_after_switch) == 8, within=10)
        upstream.team_keys = {NEW_KEY}
        revoked_at = len(upstream.requests)
        await eventually(lambda: len(upstream.requests) >= revoked_at + 100, within=10)
        stop.set()
        return revoked_at

    with capture_logs() as logs:
        clients = [asyncio.create_task(client(n)) for n in range(8)]
        revoked_at = await asyncio.wait_for(rotate(), 20)
        await asyncio.gather(*clients)

    assert statuses == [200] * len(statuses)
    assert len(statuses) >= 200
    keys_sent = [r.headers.get("x-api-key") for r in upstream.requests]
    assert set(keys_sent[:100]) == {TEAM_KEY}
    assert set(keys_sent[revoked_at:]) == {NEW_KEY}
    rotations = [e for e in logs if e["event"] == "upstream.key_rotated"]
    assert rotations == [
        {
            "event": "upstream.key_rotated",
            "log_level": "info",
            "path": str(key_file),
            "trigger": "interval",
        }
    ]


async def test_an_unreadable_key_file_keeps_the_current_key(
    start_with_key_file: StartWithKeyFile, upstream: FakeUpstream
) -> None:
    gateway, key_file = await start_with_key_file(0.02)
    upstream.add("trun_a", task_run_input(1))
    upstream.add("trun_b", task_run_input(2))
    with capture_logs() as logs:
        key_file.unlink()  # a secret in the middle of being replaced
        await eventually(lambda: any(e["event"] == "upstream.key_file_unreadable" for e in logs))
        await asyncio.sleep(0.1)  # several more checks: still one warning
        reply_a = await gateway.get("/v1/tasks/runs/trun_a/input")
        write_key(key_file, TEAM_KEY)  # back: the failure is over
        await asyncio.sleep(0.1)
        key_file.write_text("")
        await asyncio.sleep(0.1)
        reply_b = await gateway.get("/v1/tasks/runs/trun_b/input")
    assert (reply_a.status, reply_b.status) == (200, 200)
    assert [r.headers["x-api-key"] for r in upstream.requests] == [TEAM_KEY, TEAM_KEY]
    warnings = [e for e in logs if e["log_level"] == "warning"]
    where = f"Config 'upstream.api_key_file' names '{key_file}'"
    assert [(e["event"], e["message"]) for e in warnings] == [
        (
            "upstream.key_file_unreadable",
            f"{where}, which cannot be read: No such file or directory.",
        ),
        ("upstream.key_file_unreadable", f"{where}, {ONE_KEY}"),
    ]
    assert [e["event"] for e in logs if e["event"] == "upstream.key_rotated"] == []


async def test_a_missing_key_file_stops_start_up(
    tmp_path: Path, make_settings: Callable[..., Settings], start_gateway: StartGateway
) -> None:
    settings = make_settings(upstream={"api_key_file": str(tmp_path / "absent")})
    with pytest.raises(TeamKeyError) as e:
        await start_gateway(settings, env={"PARALLEL_API_KEY": TEAM_KEY})
    assert str(e.value) == (
        f"Config 'upstream.api_key_file' names '{tmp_path / 'absent'}', which cannot be read: "
        "No such file or directory."
    )


async def test_sighup_makes_serve_reread_the_key_file_at_once(
    serve: Callable[..., Awaitable[ServeProcess]], tmp_path: Path, upstream: FakeUpstream
) -> None:
    key_file = tmp_path / "team-key"
    write_key(key_file, TEAM_KEY)
    upstream.team_keys = {TEAM_KEY, NEW_KEY}
    for n in range(50):
        upstream.add(f"trun_hup{n}", task_run_input(n))
    # An hour between checks: only SIGHUP can make the gateway see the new key in this test.
    proc = await serve(
        {},
        upstream_toml=f'api_key_file = "{key_file}"\napi_key_file_interval = 3600.0\n',
    )
    created = await run_cli(tmp_path / "gateway.toml", "keys", "create", "hup-app")
    headers = {"x-api-key": created.out.decode().strip()}
    async with aiohttp.ClientSession(proc.url, headers=headers) as session:

        async def fetch(n: int) -> int:
            async with session.get(f"/v1/tasks/runs/trun_hup{n}/input") as resp:
                return resp.status

        # The running gateway picks up the new app key within its refresh interval (1 s).
        for _ in range(40):
            if await fetch(0) == 200:
                break
            await asyncio.sleep(0.05)
        write_key(key_file, NEW_KEY)
        proc.proc.send_signal(signal.SIGHUP)
        for n in range(1, 50):
            assert await fetch(n) == 200
            if upstream.requests[-1].headers["x-api-key"] == NEW_KEY:
                break
            await asyncio.sleep(0.05)

    assert upstream.requests[-1].headers["x-api-key"] == NEW_KEY
    assert upstream.requests[0].headers["x-api-key"] == TEAM_KEY
    lines = await proc.stop()  # still alive: SIGHUP did not stop it
    rotated = [line for line in lines if line["event"] == "upstream.key_rotated"]
    assert [(line["trigger"], line["path"]) for line in rotated] == [("sighup", str(key_file))]
    text = orjson.dumps(lines).decode()
    assert TEAM_KEY not in text
    assert NEW_KEY not in text


async def test_sighup_without_a_key_file_does_not_stop_serve(
    serve: Callable[..., Awaitable[ServeProcess]],
) -> None:
    proc = await serve({"PARALLEL_API_KEY": TEAM_KEY})
    proc.proc.send_signal(signal.SIGHUP)
    reloaded = await proc.next_line("config.reloaded")  # the config, unchanged
    assert proc.proc.returncode is None
    lines = await proc.stop()
    assert (reloaded["changed"], reloaded["needs_restart"]) == ([], [])
    assert [line for line in lines if line["event"].startswith("upstream.key_")] == []


async def test_a_rejected_team_key_is_the_operators_502_never_the_apps_401(
    start_gateway: StartGateway, upstream: FakeUpstream
) -> None:
    upstream.add("trun_key", task_run_input())
    gateway = await start_gateway(env={"PARALLEL_API_KEY": "a-revoked-team-key"})
    host = upstream.base_url.removeprefix("http://")

    with capture_logs() as logs:
        replies = [
            await gateway.get("/v1/tasks/runs/trun_key/input"),
            await gateway.get("/v1/tasks/runs/trun_key"),
        ]

    rejected = [line for line in logs if line["event"] == "upstream.team_key_rejected"]
    assert [(line["log_level"], line["status"]) for line in rejected] == [("error", 401)] * 2
    for reply, line in zip(replies, rejected, strict=True):
        assert (reply.status, reply.headers["x-should-retry"]) == (502, "false")
        error = orjson.loads(reply.body)["error"]
        assert error["message"] == (
            f"The gateway's team key was rejected by Parallel API at {host} (HTTP 401, "
            f"ref_id {line['ref_id']}); the gateway's operator must replace it."
        )
    assert upstream.count() == 2  # not retried: only the operator can mend it
    async with (
        aiohttp.ClientSession() as session,
        session.get(gateway.url + "/readyz") as resp,
    ):
        ready = orjson.loads(await resp.read())
    assert ready["upstream"]["last_contact"] == "failed"
    assert ready["upstream"]["detail"] == (
        f"HTTP 401: team key rejected (ref_id {rejected[-1]['ref_id']})"
    )


async def test_a_403_to_the_team_key_says_what_parallel_said(
    start_gateway: StartGateway, upstream: FakeUpstream
) -> None:
    gateway = await start_gateway()
    refusal = error_json("Processor ultra is not enabled for this account", "ref-403")
    upstream.script.append(Scripted(403, refusal, {"Content-Type": "application/json"}))

    reply = await gateway.get("/v1/tasks/runs/trun_any")

    assert (reply.status, reply.headers["x-should-retry"]) == (502, "false")
    assert orjson.loads(reply.body)["error"]["message"] == (
        "The gateway's team key was rejected by Parallel API at "
        f"{upstream.base_url.removeprefix('http://')} (HTTP 403, ref_id ref-403); Parallel said: "
        "Processor ultra is not enabled for this account; the gateway's operator must see to it."
    )
