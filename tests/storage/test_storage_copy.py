"""`storage copy`: a populated SQLite store into PostgreSQL, every table, idempotently."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tqdm import tqdm

from gateway.config import StorageSettings
from gateway.storage.copy import Copied, copy_storage
from gateway.storage.open import open_storage
from gateway.storage.protocols import Storage
from gateway.storage.types import (
    AnswerKind,
    CallCount,
    NewKey,
    Recording,
    ReplayMode,
    StoredAnswer,
    StoredInput,
)

AT = "2026-01-02T03:04:05.000000Z"
LATER = "2026-01-03T00:00:00.000000Z"
BETA = "mcp-server-2025-07-17"
ANSWER = b'{"run": {"status": "completed"},  "output": 1.10}\xff'
COUNTED_SEARCH = CallCount("search", "2026-01-03", "search", None, 1, 0)
BODIES = {f"trun_{i:04d}": f'{{"input": "r\\u00e9n {i}",  "n":1.10}}'.encode() for i in range(1203)}


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[Storage]:
    opened = await open_storage(StorageSettings(database=str(tmp_path / "gw.db")))
    keys = opened.app_keys
    await keys.create(NewKey("billing", "h-billing", "pgw_bil", AT, ["GET /v1/tasks/runs/*"], 2.5))
    await keys.create(
        NewKey("search", "h-search", "pgw_sea", AT, max_open=7, replay=ReplayMode.REPLAY_ONLY)
    )
    await keys.rotate("billing", "h-billing-2", "pgw_bi2", LATER, "2026-02-01T00:00:00.000000Z")
    await keys.revoke("search", LATER)
    await keys.record_last_used({"billing"}, LATER)
    await opened.run_inputs.put_many(StoredInput(r, b, AT) for r, b in BODIES.items())
    await opened.run_access.record_created("billing", ["trun_0001", "tgrp_1"], AT)
    await opened.run_access.grant("trun_0002", "search", LATER)
    await opened.purges.purge(["trun_gone"])
    await opened.purges.purge(None)
    await opened.run_inputs.put_many(StoredInput(r, b, AT) for r, b in BODIES.items())
    for kind, beta in ((AnswerKind.RESULT, ""), (AnswerKind.RESULT, BETA), (AnswerKind.RUN, "")):
        await opened.final_answers.put(StoredAnswer(kind, "trun_0001", beta, ANSWER, AT))
    for app, run_id in (("billing", "trun_0001"), ("search", "trun_0002")):
        await opened.recordings.put(Recording(app, "m" * 64, {"input": "f" * 16}, run_id, AT))
    await opened.billing_calls.add(
        [CallCount("billing", "2026-01-02", "task_run", "core", 3, 2), COUNTED_SEARCH]
    )
    yield opened
    await opened.close()


@pytest.fixture
def postgres(postgres_storage: Storage) -> Storage:
    return postgres_storage


def quiet(total: int, table: str) -> tqdm[Any]:
    return tqdm(total=total, desc=table, disable=True)


async def snapshot(storage: Storage) -> dict[str, Any]:
    return {
        "apps": await storage.app_keys.list_apps(),
        "keys": await storage.app_keys.key_states(),
        "entries": [e async for e in storage.run_inputs.scan()],
        "access": await storage.run_access.list_records(),
        "purges": [p.run_ids for p in await storage.purges.purges_since(0)],
        "stats": await storage.run_inputs.stats(),
        "answer_stats": await storage.final_answers.stats(),
        "answer": await storage.final_answers.get(AnswerKind.RESULT, "trun_0001", BETA),
        "recordings": await storage.recordings.list_recordings(),
        "calls": await storage.billing_calls.counts("2026-01-01", "2026-12-31"),
    }


async def test_everything_is_copied_as_it_is(sqlite: Storage, postgres: Storage) -> None:
    copied = await copy_storage(sqlite, postgres, quiet)
    assert copied == [
        Copied("app_keys", 2, 2),
        Copied("retired_keys", 1, 1),
        Copied("run_access", 3, 3),
        Copied("run_inputs", 1203, 1203),
        Copied("final_answers", 3, 3),
        Copied("create_recordings", 2, 2),
        Copied("cache_purges", 2, 2),
        Copied("billing_calls", 2, 2),
    ]
    assert await snapshot(postgres) == await snapshot(sqlite)


async def test_copying_again_adds_nothing_and_keeps_what_the_target_has(
    sqlite: Storage, postgres: Storage
) -> None:
    await postgres.run_inputs.put(StoredInput("trun_0005", b'{"target":"kept"}', LATER))
    await copy_storage(sqlite, postgres, quiet)
    again = await copy_storage(sqlite, postgres, quiet)
    assert [c.added for c in again] == [0] * len(again)
    assert len(again) == 8
    kept = await postgres.run_inputs.get("trun_0005")
    assert kept == StoredInput("trun_0005", b'{"target":"kept"}', LATER)
