"""The README's Quickstart, with no config file, from a directory other than `make run`'s."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import orjson

from tests.cli.test_cli import CONSOLE_SCRIPT
from tests.cli_support import cli_text
from tests.fake_upstream import TEAM_KEY
from tests.serve_support import launch_serve

RUN = "/v1/tasks/runs/trun_9907962f83aa4d9d98fd7f4bf745d654/input"


async def test_a_key_made_from_another_directory_works_on_the_running_gateway(
    tmp_path: Path,
) -> None:
    repo, app = tmp_path / "parallel-gateway", tmp_path / "billing-app"
    repo.mkdir()
    app.mkdir()
    data = {"XDG_DATA_HOME": str(tmp_path / "data")}  # the user's data directory, for the test
    database = tmp_path / "data" / "parallel-gateway" / "parallel-gateway.db"
    # Terminal 1: `make run` in the gateway's directory (offline: nothing reaches Parallel).
    proc, url = await launch_serve(
        None, "--offline", env={"PARALLEL_API_KEY": TEAM_KEY, **data}, cwd=repo
    )
    try:
        # Terminal 2, elsewhere: the console script, with no config and no --create.
        created = cli_text(
            "keys", "create", "billing-app", cwd=app, env=data, command=CONSOLE_SCRIPT
        )
        key = created.out.strip()
        statuses = []
        async with aiohttp.ClientSession(url, headers={"x-api-key": key}) as session:
            for _ in range(40):  # the gateway reloads keys every second
                async with session.get(RUN) as resp:
                    statuses.append(resp.status)
                    body = await resp.read()
                if resp.status != 401:
                    break
                await asyncio.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 10)

    assert (created.code, created.err) == (
        0,
        f"Database: {database} (no config file: this user's default database)\n",
    )
    # Authenticated: the miss is refused only because the gateway is offline.
    assert statuses[-1] == 503
    assert set(statuses[:-1]) <= {401}
    assert orjson.loads(body)["error"]["message"] == (
        "Run trun_9907962f83aa4d9d98fd7f4bf745d654 is not in the gateway's cache, and the "
        "gateway is offline."
    )
    starting = next(
        orjson.loads(line) for line in err.splitlines() if b'"gateway.starting"' in line
    )
    assert starting["database"] == str(database)
    assert list(repo.iterdir()) == []
    assert list(app.iterdir()) == []
