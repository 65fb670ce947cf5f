"""SIGHUP reloads the config file's reloadable settings; the rest wait for a restart."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from gateway.config import Settings, settings_from_dict
from gateway.ops.reload_policy import RELOADABLE, plan_reload
from tests.conftest import run_cli, unused_port
from tests.fake_upstream import TEAM_KEY, FakeUpstream, Scripted, task_run_input
from tests.http.test_serve import ServeProcess
from tests.serve_support import launch_serve

Sections = dict[str, dict[str, Any]]
CREATED = orjson.dumps({"run_id": "trun_reload", "status": "queued"})


def changed(**sections: dict[str, Any]) -> Settings:
    return settings_from_dict(sections)


@pytest.mark.parametrize(
    ("loaded", "applied", "needs_restart"),
    [
        pytest.param(Settings(), [], [], id="nothing"),
        pytest.param(changed(log={"level": "debug"}), ["log.level"], [], id="log level"),
        pytest.param(
            changed(server={"header_timeout": 2.0, "max_headers": 10}),
            ["server.max_headers", "server.header_timeout"],
            [],
            id="head limits",
        ),
        pytest.param(
            changed(upstream={"timeout": 1.0, "max_attempts": 2, "base_url": "http://x"}),
            ["upstream.timeout", "upstream.max_attempts"],
            ["upstream.base_url"],
            id="upstream",
        ),
        pytest.param(
            changed(cache={"memory_entries": 5, "sync_interval": 9.0}),
            ["cache.memory_entries"],
            ["cache.sync_interval"],
            id="cache",
        ),
        pytest.param(
            changed(
                server={"port": 9000, "max_body_bytes": 1},
                storage={"database": "other.db"},
                isolation={"mode": "app"},
                metrics={"token": "a-secret-token"},
            ),
            ["server.max_body_bytes"],
            ["server.port", "storage.database", "isolation.mode", "metrics.token"],
            id="mixed",
        ),
    ],
)
def test_what_a_reload_applies_and_what_needs_a_restart(
    loaded: Settings, applied: list[str], needs_restart: list[str]
) -> None:
    plan = plan_reload(Settings(), loaded)
    assert (list(plan.changed), list(plan.needs_restart)) == (applied, needs_restart)
    for section in dataclasses.fields(Settings):
        for key in dataclasses.fields(getattr(Settings(), section.name)):
            name = f"{section.name}.{key.name}"
            taken = loaded if name in applied else Settings()
            value = getattr(getattr(plan.settings, section.name), key.name)
            assert value == getattr(getattr(taken, section.name), key.name), name


def test_every_reloadable_name_is_a_setting() -> None:
    names = {
        f"{section.name}.{key.name}"
        for section in dataclasses.fields(Settings)
        for key in dataclasses.fields(getattr(Settings(), section.name))
    }
    assert names >= RELOADABLE


def write_config(path: Path, sections: Sections) -> None:
    """A TOML file of `sections` (str, int, float and bool values: JSON spells them as TOML)."""
    text = "".join(
        f"[{name}]\n" + "".join(f"{k} = {orjson.dumps(v).decode()}\n" for k, v in values.items())
        for name, values in sections.items()
    )
    path.write_text(text)


class Reloading:
    """A real `serve` on a config file that a test rewrites, then sends SIGHUP."""

    def __init__(self, config: Path, sections: Sections, key: str, process: ServeProcess) -> None:
        self.config = config
        self.sections = sections
        self.key = key
        self.process = process

    async def reload(self, text: str | None = None, **changes: dict[str, Any]) -> None:
        """Rewrite the config with `changes` to its sections (or as `text`), then SIGHUP."""
        if text is None:
            for name, values in changes.items():
                self.sections.setdefault(name, {}).update(values)
            write_config(self.config, self.sections)
        else:
            self.config.write_text(text)
        self.process.proc.send_signal(signal.SIGHUP)

    async def call(self, method: str, path: str, body: bytes | None = None) -> int:
        """The status of one call with the app's key, on a new connection."""
        headers = {"x-api-key": self.key}
        async with (
            aiohttp.ClientSession(self.process.url, headers=headers) as session,
            session.request(method, path, data=body) as resp,
        ):
            await resp.read()
            return resp.status


Start = Callable[[Sections], Awaitable[Reloading]]


@pytest.fixture
async def start(tmp_path: Path, upstream: FakeUpstream) -> AsyncIterator[Start]:
    procs: list[asyncio.subprocess.Process] = []

    async def launch(sections: Sections) -> Reloading:
        config = tmp_path / "gateway.toml"
        base: Sections = {
            "storage": {"database": str(tmp_path / "gw.db")},
            "upstream": {"base_url": upstream.base_url, "backoff_initial": 0.01},
        }
        for name, values in sections.items():
            base.setdefault(name, {}).update(values)
        write_config(config, base)
        created = await run_cli(config, "keys", "create", "app", "--create")
        assert created.code == 0, created.err
        proc, url = await launch_serve(config, env={"PARALLEL_API_KEY": TEAM_KEY})
        procs.append(proc)
        return Reloading(config, base, created.out.decode().strip(), ServeProcess(proc, url))

    yield launch
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def access_paths(lines: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """The API calls' access lines (not launch_serve's /healthz probes)."""
    return [
        (line["path"], line["status"])
        for line in lines
        if line["event"] == "access" and line["path"].startswith("/v1/")
    ]


async def test_sighup_applies_new_limits_retries_and_log_level(
    start: Start, upstream: FakeUpstream
) -> None:
    gateway = await start(
        {
            "server": {"max_body_bytes": 2000},
            "upstream": {"max_attempts": 1},
            "log": {"level": "warning"},
        }
    )
    upstream.add("trun_before", task_run_input(1))
    upstream.add("trun_after", task_run_input(2))
    upstream.script.extend([Scripted(202, CREATED), Scripted(503)])
    long_url = "/healthz?" + "q" * 300
    before = [
        await gateway.call("POST", "/v1/tasks/runs", b"x" * 1500),
        await gateway.call("GET", "/v1/tasks/runs/trun_before/input"),  # 503, not retried
        await gateway.call("GET", long_url),
    ]
    sent = upstream.count()

    await gateway.reload(
        server={"max_body_bytes": 1000, "max_line_bytes": 200},
        upstream={"max_attempts": 2},
        log={"level": "info"},
    )
    reloaded = await gateway.process.next_line("config.reloaded")
    upstream.script.append(Scripted(503))
    after = [
        await gateway.call("POST", "/v1/tasks/runs", b"x" * 1500),  # 413, nothing sent
        await gateway.call("GET", "/v1/tasks/runs/trun_after/input"),  # 503, then 200
        await gateway.call("GET", long_url),  # a new connection: the new line limit
    ]
    lines = await gateway.process.stop()

    assert before == [202, 503, 200]
    assert sent == 2
    assert (reloaded["level"], reloaded["config"]) == ("info", str(gateway.config))
    assert reloaded["changed"] == [
        "server.max_body_bytes",
        "server.max_line_bytes",
        "upstream.max_attempts",
        "log.level",
    ]
    assert reloaded["needs_restart"] == []
    assert after == [413, 200, 414]
    assert upstream.count() == sent + 2  # trun_after twice; the POST never left
    assert upstream.count("trun_after") == 2
    # At "warning" no access line was written; at "info" each call has one.
    assert access_paths(lines) == [
        ("/v1/tasks/runs", 413),
        ("/v1/tasks/runs/trun_after/input", 200),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            '[server]\nmax_body_bytes = "lots"\n',
            "Config 'server.max_body_bytes' has value 'lots'. Not a valid int.",
            id="bad value",
        ),
        pytest.param(
            "[server\nmax_body_bytes = 10\n",
            "is not valid TOML: Expected ']' at the end of a table declaration (at line 1, "
            "column 8).",
            id="not TOML",
        ),
        pytest.param(
            "[server]\nmax_body_byte = 10\n",
            "Config has unknown key 'server.max_body_byte'. Did you mean 'max_body_bytes'?",
            id="unknown key",
        ),
    ],
)
async def test_an_invalid_file_keeps_the_settings_in_force(
    start: Start, upstream: FakeUpstream, text: str, message: str
) -> None:
    gateway = await start({"server": {"max_body_bytes": 1000}})
    await gateway.reload(text)
    failed = await gateway.process.next_line("config.reload_failed")
    upstream.script.append(Scripted(202, CREATED))
    statuses = [
        await gateway.call("POST", "/v1/tasks/runs", b"x" * 1500),
        await gateway.call("POST", "/v1/tasks/runs", b"x" * 900),
    ]
    await gateway.reload(server={"max_body_bytes": 2000})  # a valid file again: applied
    reloaded = await gateway.process.next_line("config.reloaded")
    lines = await gateway.process.stop()

    assert (failed["level"], failed["config"]) == ("error", str(gateway.config))
    assert failed["message"].endswith(f"{message} The settings in force are kept.")
    assert statuses == [413, 202]
    assert upstream.count() == 1
    assert reloaded["changed"] == ["server.max_body_bytes"]
    assert [line["event"] for line in lines].count("config.reloaded") == 1


async def test_a_setting_that_needs_a_restart_is_named_and_left_as_it_was(
    start: Start, upstream: FakeUpstream, tmp_path: Path
) -> None:
    token = "metrics-token-never-logged-0123456789"
    gateway = await start({})
    upstream.add("trun_one", task_run_input(1))
    upstream.add("trun_two", task_run_input(2))
    assert await gateway.call("GET", "/v1/tasks/runs/trun_one/input") == 200

    await gateway.reload(
        upstream={"base_url": "http://127.0.0.1:9"},
        storage={"database": str(tmp_path / "elsewhere.db")},
        isolation={"mode": "app"},
        metrics={"token": token},
        log={"access_log": False},
    )
    reloaded = await gateway.process.next_line("config.reloaded")
    status = await gateway.call("GET", "/v1/tasks/runs/trun_two/input")
    metrics_status = await gateway.call("GET", "/metrics")  # metrics.token waits too
    lines = await gateway.process.stop()

    assert reloaded["level"] == "warning"
    assert reloaded["changed"] == ["log.access_log"]
    assert reloaded["needs_restart"] == [
        "upstream.base_url",
        "storage.database",
        "isolation.mode",
        "metrics.token",
    ]
    assert reloaded["message"] == (
        "These settings take effect only on a restart; they are left as they were."
    )
    assert status == 200  # from the same upstream, into the same database
    assert upstream.count("trun_two") == 1
    assert not (tmp_path / "elsewhere.db").exists()
    assert metrics_status == 200
    assert access_paths(lines) == [("/v1/tasks/runs/trun_one/input", 200)]  # none after it
    assert token not in orjson.dumps(lines).decode()


async def test_sighup_to_the_supervisor_reloads_every_worker(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    config = tmp_path / "gateway.toml"
    sections: Sections = {
        "server": {"max_body_bytes": 2000},
        "storage": {"database": str(tmp_path / "gw.db")},
        "upstream": {"base_url": upstream.base_url},
    }
    write_config(config, sections)
    created = await run_cli(config, "keys", "create", "app", "--create")
    proc, url = await launch_serve(config, "--workers", "2", env={}, probe="/readyz")
    gateway = Reloading(config, sections, created.out.decode().strip(), ServeProcess(proc, url))
    try:
        for _ in range(2):  # each worker handles SIGHUP once it listens
            await gateway.process.next_line("gateway.listening")
        await gateway.reload(server={"max_body_bytes": 1000})
        reloaded = [await gateway.process.next_line("config.reloaded") for _ in range(2)]
        workers = set()
        for _ in range(24):  # new connections: SO_REUSEPORT spreads them over both workers
            async with (
                aiohttp.ClientSession(url, headers={"x-api-key": gateway.key}) as session,
                session.post("/v1/tasks/runs", data=b"x" * 1500) as resp,
            ):
                assert resp.status == 413
                workers.add(resp.headers["x-gateway-request-id"].split("-")[0])
        lines = await gateway.process.stop()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    assert [line["changed"] for line in reloaded] == [["server.max_body_bytes"]] * 2
    assert len(workers) == 2  # both refused it
    assert upstream.count() == 0
    assert [line["event"] for line in lines].count("workers.stopped") == 1


async def test_a_sighup_while_workers_start_stops_none_of_them(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    config = tmp_path / "gateway.toml"
    write_config(
        config,
        {
            "storage": {"database": str(tmp_path / "gw.db")},
            "upstream": {"base_url": upstream.base_url},
        },
    )
    port = unused_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", "--config", str(config),
        "--port", str(port), "--workers", "2",
        stdin=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    serve = ServeProcess(proc, f"http://127.0.0.1:{port}")
    try:
        await serve.next_line("workers.started")  # the workers are still importing
        proc.send_signal(signal.SIGHUP)
        listening = [await serve.next_line("gateway.listening") for _ in range(2)]
        lines = await serve.stop()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    assert len(listening) == 2
    assert [line["event"] for line in lines if line["event"].startswith("workers.")] == [
        "workers.started",
        "workers.stopped",
    ]
