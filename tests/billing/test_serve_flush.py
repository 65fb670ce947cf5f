"""A real `serve` process SIGTERMed under load: every call upstream answered is in the store."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from parallel import AsyncParallel

from gateway.billing.flush import utc_day
from gateway.config import StorageSettings
from gateway.keys.app_keys import create_key
from tests.cli_support import make_workspace
from tests.fake_parallel import FakeParallel
from tests.fake_upstream import TEAM_KEY, ServerFactory
from tests.serve_support import launch_serve
from tests.storage_support import opened_storage

CALLS = 40


async def test_sigterm_under_load_loses_no_counts(
    tmp_path: Path, aiohttp_server: ServerFactory
) -> None:
    fake = await FakeParallel().listen(aiohttp_server)
    fake.delay = 0.02  # calls overlap, so the signal finds some in flight
    # Nothing is flushed while serving: only the flush at shutdown can store the counts.
    extra = f'[upstream]\nbase_url = "{fake.base_url}"\n[billing]\nflush_interval = 3600.0\n'
    ws = make_workspace(tmp_path, extra)
    async with opened_storage(StorageSettings(database=str(ws.database))) as storage:
        key = await create_key(storage.app_keys, "loaded")
    proc, url = await launch_serve(ws.config, env={"PARALLEL_API_KEY": TEAM_KEY})
    sdk = AsyncParallel(api_key=key, base_url=url, max_retries=0)
    answered = 0

    async def create(n: int) -> None:
        nonlocal answered
        await sdk.task_run.create(input=f"q{n}", processor="lite")
        answered += 1
        if answered == CALLS // 4:
            proc.send_signal(signal.SIGTERM)

    results = await asyncio.gather(*(create(n) for n in range(CALLS)), return_exceptions=True)
    await sdk.close()
    _, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0, err.decode()[-2000:]

    created = sum(1 for result in results if result is None)
    assert CALLS // 4 <= created == answered == len(fake.runs)
    day = utc_day(time.time())
    async with opened_storage(StorageSettings(database=str(ws.database))) as storage:
        counts = await storage.billing_calls.counts(day, day)
    assert [(c.app, c.kind, c.processor, c.calls) for c in counts] == [
        ("loaded", "task_run", "lite", created)
    ]
