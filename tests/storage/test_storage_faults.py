"""Storage faults are visible: a read-only file, a full disk (a small tmpfs) and a corrupt page,
each against a real SQLite file, through the real gateway, /readyz, /metrics and the CLI."""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import pytest
from structlog.typing import EventDict

from gateway.app import create_app
from gateway.config import Settings
from gateway.keys.app_keys import create_key
from gateway.state import STORAGE
from gateway.storage.open import open_storage
from gateway.timestamps import now_rfc3339
from tests.cli_support import make_workspace
from tests.conftest import Gateway, ServeApp, StartGateway, capture_logs, config_for, run_cli
from tests.fake_upstream import TEAM_KEY, FakeUpstream, task_run_input
from tests.ops.test_ops import sample
from tests.passthrough_support import error_of

MISS = "parallel-gateway; fwd=uri-miss"
STORED = MISS + "; stored"
HIT = "parallel-gateway; hit"
# Keys are reloaded (and their last use written) once a minute here, so that only the cache
# writes a test makes reach the store.
QUIET_KEYS = {"refresh_interval": 60.0}


def run(run_id: str) -> str:
    return f"/v1/tasks/runs/{run_id}/input"


def storage_errors(logs: list[EventDict]) -> list[EventDict]:
    return [line for line in logs if line["event"] == "storage.error"]


def assert_no_traceback(logs: list[EventDict]) -> None:
    assert [line for line in logs if "exc_info" in line] == []


async def readyz(gateway: Gateway) -> tuple[int, dict[str, Any]]:
    reply = await gateway.get("/readyz", key=None)
    body: dict[str, Any] = orjson.loads(reply.body)
    return reply.status, body


async def metric(gateway: Gateway, name: str, **labels: str) -> float | None:
    reply = await gateway.get("/metrics", key=None)
    assert reply.status == 200
    return sample(reply.body.decode(), name, **labels)


@contextmanager
def immutable(path: Path) -> Iterator[None]:
    """`path` cannot be written, even by root (the tests run as root, where chmod stops nothing)."""
    made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    if made.returncode != 0:
        reason = made.stderr.decode().strip()
        pytest.skip(f"chattr +i failed ({reason}): no file here that root cannot write")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, unmounted after the test."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"mount -t tmpfs failed ({made.stderr.decode().strip()}): no full disk here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=True)


def fill(directory: Path) -> Path:
    """Fill the file system holding `directory` to the last byte (a second call, again)."""
    filler = directory / f"filler{len(list(directory.glob('filler*')))}"
    with filler.open("wb", buffering=0) as f:
        for chunk in (b"\0" * 65536, b"\0" * 512, b"\0"):
            assert write_until_refused(f, chunk) == errno.ENOSPC
    return filler


def write_until_refused(out: BinaryIO, chunk: bytes) -> int | None:
    """Write `chunk` again and again; the errno that stops it."""
    try:
        while True:
            out.write(chunk)
    except OSError as e:
        return e.errno


# --- a read-only database -------------------------------------------------------------------


async def test_a_read_only_database_is_reported_at_start_by_readyz_and_metrics(
    serve_app: ServeApp, make_settings: Callable[..., Settings], upstream: FakeUpstream
) -> None:
    settings = make_settings(keys=QUIET_KEYS)
    storage = await open_storage(settings.storage)
    key = await create_key(storage.app_keys, "app")
    await storage.close()
    upstream.add("trun_ro", task_run_input())
    database = Path(settings.storage.database)

    with immutable(database), capture_logs() as logs:
        app = create_app(settings, env={"PARALLEL_API_KEY": TEAM_KEY})
        gateway = Gateway(await serve_app(app), settings, key)
        started = storage_errors(logs)
        status, ready = await readyz(gateway)
        miss = await gateway.get(run("trun_ro"))
        again = await gateway.get(run("trun_ro"))
        writable = await metric(gateway, "gateway_storage_writable")
        errors = await metric(gateway, "gateway_storage_errors_total", kind="read-only")

    cause = "attempt to write a readonly database"
    assert [(e["kind"], e["operation"], e["error"], e["count"]) for e in started] == [
        ("read-only", "start-up check", cause, 1)
    ]
    assert started[0]["database"] == str(database)
    assert status == 503
    assert ready["status"] == "not-ready"
    assert ready["database"] == "ok"
    assert ready["storage"]["writable"] is False
    assert ready["storage"]["errors"] == {"read-only": 1}
    assert ready["storage"]["last_error"]["kind"] == "read-only"
    assert ready["storage"]["last_error"]["detail"] == cause
    # Misses are still answered, unstored and said so, with one log line for all of them.
    assert (miss.status, miss.headers["Cache-Status"], miss.body) == (
        200,
        MISS,
        upstream.inputs["trun_ro"],
    )
    assert (again.status, again.headers["Cache-Status"]) == (200, MISS)
    assert upstream.count("trun_ro") == 2
    assert writable == 0.0
    assert errors == 3.0
    assert len(storage_errors(logs)) == 1
    assert_no_traceback(logs)


def test_keys_create_on_a_read_only_database_says_so_in_one_line(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    assert ws.run("migrate").code == 0

    with immutable(ws.database):
        result = ws.run_text("keys", "create", "billing")

    assert (result.code, result.out) == (1, "")
    assert result.err == (
        f"parallel-gateway: Cannot use database '{ws.database}': "
        "attempt to write a readonly database.\n"
    )
    assert ws.rows("SELECT name FROM app_keys") == []


# --- a full disk ----------------------------------------------------------------------------


async def test_a_full_disk_is_counted_logged_once_and_reported_until_space_returns(
    small_disk: Path,
    start_gateway: StartGateway,
    make_settings: Callable[..., Settings],
    upstream: FakeUpstream,
) -> None:
    settings = make_settings(storage={"database": str(small_disk / "gw.db")}, keys=QUIET_KEYS)
    gateway = await start_gateway(settings)
    runs = [f"trun_full{n:02d}" for n in range(30)]
    for run_id in [*runs, "trun_after"]:
        upstream.add(run_id, task_run_input(input="z" * 5000))
    filler = fill(small_disk)

    with capture_logs() as logs:
        replies = [await gateway.get(run(run_id)) for run_id in runs]
        status, ready = await readyz(gateway)
        writable = await metric(gateway, "gateway_storage_writable")
        errors = await metric(gateway, "gateway_storage_errors_total", kind="disk-full")

    assert [(r.status, r.headers["Cache-Status"]) for r in replies] == [(200, MISS)] * 30
    assert [r.body for r in replies] == [upstream.inputs[run_id] for run_id in runs]
    assert upstream.count() == 30
    [logged] = storage_errors(logs)
    assert (logged["kind"], logged["operation"], logged["count"]) == ("disk-full", "write", 1)
    assert logged["error"] == "database or disk is full"
    assert logged["per_seconds"] == 60.0
    assert_no_traceback(logs)
    assert (status, ready["status"], ready["storage"]["writable"]) == (503, "not-ready", False)
    assert ready["storage"]["errors"] == {"disk-full": 30}
    assert (writable, errors) == (0.0, 30.0)

    filler.unlink()
    after = await gateway.get(run("trun_after"))
    assert after.headers["Cache-Status"] == STORED
    status, ready = await readyz(gateway)
    assert (status, ready["status"], ready["storage"]["writable"]) == (200, "ready", True)
    assert ready["storage"]["errors"] == {"disk-full": 30}  # the history stays
    assert await metric(gateway, "gateway_storage_writable") == 1.0


async def test_cli_commands_on_a_full_disk_say_so_in_one_line(
    small_disk: Path, tmp_path: Path
) -> None:
    ws = make_workspace(small_disk)
    assert ws.run("migrate").code == 0
    line = (
        b'{"version":1,"run_id":"trun_%03d","stored_at":"2026-01-01T00:00:00Z",'
        b'"input":{"processor":"core","input":"%s"}}\n'
    )
    export = tmp_path / "runs.jsonl"
    export.write_bytes(b"".join(line % (n, b"y" * 2000) for n in range(100)))
    filler = fill(small_disk)
    with filler.open("r+b") as f:  # room to open the database, not to import 200 kB
        f.truncate(filler.stat().st_size - 96 * 1024)

    imported = ws.run_text("cache", "import", str(export))
    fill(small_disk)
    created = ws.run_text("keys", "create", "billing")

    where = f"database '{ws.database}'"
    assert (imported.code, imported.out, imported.err) == (
        1,
        "",
        f"parallel-gateway: Cannot use {where}: database or disk is full.\n",
    )
    # With no byte left, SQLite cannot even make its shared-memory file.
    assert (created.code, created.out, created.err) == (
        1,
        "",
        f"parallel-gateway: Cannot open {where}: disk I/O error.\n",
    )


# --- a corrupt page -------------------------------------------------------------------------


def corrupt_page_holding(database: Path, marker: bytes) -> None:
    """Overwrite the b-tree header of the one page of `database` that holds `marker`."""
    data = bytearray(database.read_bytes())
    assert data.count(marker) == 1
    page_size = int.from_bytes(data[16:18], "big")
    start = data.index(marker) // page_size * page_size
    data[start : start + 12] = b"\x0d\x00\x00\xff\xff\xff\xff\x00\xff\xff\xff\xff"
    database.write_bytes(bytes(data))


async def test_a_run_on_a_corrupt_page_is_fetched_again_and_served(
    start_gateway: StartGateway, make_settings: Callable[..., Settings], upstream: FakeUpstream
) -> None:
    settings = make_settings(keys=QUIET_KEYS)
    first = await start_gateway(settings)
    for n in range(40):
        upstream.add(f"trun_c{n:02d}", task_run_input(n, input=f"MARK{n:02d}" + "y" * 500))
        assert (await first.get(run(f"trun_c{n:02d}"))).headers["Cache-Status"] == STORED
    await first.server.close()  # the WAL is checkpointed into the file
    database = Path(settings.storage.database)
    corrupt_page_holding(database, b"MARK20")

    gateway = await start_gateway(settings, app="app2")
    with capture_logs() as logs:
        refetched = await gateway.get(run("trun_c20"))
        hit = await gateway.get(run("trun_c20"))
        intact = await gateway.get(run("trun_c00"))
        status, ready = await readyz(gateway)
        errors = await metric(gateway, "gateway_storage_errors_total", kind="corrupt")

    assert (refetched.status, refetched.headers["Cache-Status"], refetched.body) == (
        200,
        MISS,
        upstream.inputs["trun_c20"],
    )
    assert (hit.status, hit.headers["Cache-Status"], hit.body) == (
        200,
        HIT,
        upstream.inputs["trun_c20"],
    )
    assert (intact.status, intact.headers["Cache-Status"]) == (200, HIT)
    assert upstream.count("trun_c20") == 2
    assert upstream.count("trun_c00") == 1
    [logged] = storage_errors(logs)
    assert (logged["kind"], logged["operation"], logged["run_id"], logged["count"]) == (
        "corrupt",
        "read",
        "trun_c20",
        1,
    )
    assert_no_traceback(logs)
    # Writes still work, so the gateway stays ready; the fault is reported all the same.
    assert (status, ready["status"], ready["storage"]["writable"]) == (200, "ready", True)
    assert ready["storage"]["last_error"]["kind"] == "corrupt"
    assert ready["storage"]["errors"] == {"corrupt": 1}
    assert errors == 2.0  # and once more: /metrics could not count the cache's entries

    config = config_for(database.with_suffix(".toml"), settings)
    broken = await run_cli(config, "cache", "get", "trun_c20")
    assert (broken.code, broken.out, broken.err) == (
        1,
        b"",
        f"parallel-gateway: Cannot use database '{database}': database disk image is malformed.\n",
    )


async def test_an_ownership_record_on_a_corrupt_page_is_a_counted_storage_fault_not_a_traceback(
    start_gateway: StartGateway, make_settings: Callable[..., Settings], upstream: FakeUpstream
) -> None:
    settings = make_settings(isolation={"mode": "app"}, keys=QUIET_KEYS)
    runs = [f"trun_MARK{n:03d}" + "o" * 100 for n in range(200)]
    first = await start_gateway(settings)
    await first.server.app[STORAGE].run_access.record_created("app2", runs, now_rfc3339())
    await first.server.close()  # the WAL is checkpointed into the file
    database = Path(settings.storage.database)
    corrupt_page_holding(database, b"MARK100")
    for run_id in (runs[0], runs[100]):
        upstream.add(run_id, task_run_input())

    gateway = await start_gateway(settings, app="app2")
    with capture_logs() as logs:
        broken = [await gateway.get(run(runs[100])) for _ in range(3)]
        intact = await gateway.get(run(runs[0]))
        errors = await metric(gateway, "gateway_storage_errors_total", kind="corrupt")

    assert [r.status for r in broken] == [503] * 3
    assert error_of(broken[0].body)["message"] == (
        "The gateway could not read who may use this run from its database; try again later."
    )
    assert (intact.status, intact.headers["Cache-Status"]) == (200, STORED)
    assert upstream.count(runs[100]) == 0
    [logged] = storage_errors(logs)
    assert (logged["kind"], logged["operation"], logged["count"]) == ("corrupt", "read", 1)
    assert_no_traceback(logs)
    assert errors == 3.0
