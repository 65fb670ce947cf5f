"""Recorded creates: finding a finished recording to replay (its run's final answer in the
final-answer cache), and recording a create that went upstream."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import orjson
import structlog

from ..http.catalog import Creates
from ..keys.ownership import created_ids
from ..storage.health import StorageHealth
from ..storage.protocols import Recordings
from ..storage.types import AnswerKind, Recording, StoreError
from ..timestamps import now_rfc3339
from .final_answers import FinalAnswerCache, Question
from .match_key import MatchKey
from .policy import is_valid_run_id
from .replay_miss import NEAREST_POOL

log = structlog.get_logger("gateway.cache")


@dataclass(frozen=True, slots=True)
class Found:
    """A recording whose run finished, and that run's object (the create's answer)."""

    recording: Recording
    run: bytes


class CreateRecordings:
    """Recordings in the store, answered with the final-answer cache's run objects."""

    def __init__(self, store: Recordings, finals: FinalAnswerCache, health: StorageHealth) -> None:
        self._store = store
        self._finals = finals
        self._health = health

    async def find(self, key: MatchKey, app: str | None) -> Found | list[Recording]:
        """The newest recording of `key` (only `app`'s when given) whose run finished, else
        the recordings of `key` whose run did not (none: nothing recorded, or the store could
        not say)."""
        try:
            recordings = await self._store.matching(key.hash, app)
        except StoreError as e:
            self._health.failed(e, "read")
            return []
        for recording in recordings:
            run = await self._finished_run(recording.run_id, key.beta)
            if run is not None:
                return Found(recording, run)
        return recordings

    async def nearest_pool(self, app: str | None) -> list[Recording]:
        """The most recent recordings a create may match (`app`'s, or every app's for None),
        for a miss to name the nearest of."""
        try:
            return await self._store.list_recordings(app, NEAREST_POOL)
        except StoreError as e:
            self._health.failed(e, "read")
            return []

    async def record(self, app: str, key: MatchKey, created: bytes) -> bool:
        """Record the run upstream's create answer `created` names; whether it is recorded."""
        run_ids = created_ids(Creates.RUN, created)
        if len(run_ids) != 1 or not is_valid_run_id(run_ids[0]):
            log.warning("replay.not_recorded", reason="no-run-id")
            return False
        recording = Recording(app, key.hash, dict(key.fields), run_ids[0], now_rfc3339())
        try:
            # Shielded: an app that hangs up must not cancel a recording its next run needs.
            await asyncio.shield(self._store.put(recording))
        except Exception as e:
            self._health.failed(e, "write", run_id=run_ids[0])
            return False
        self._health.wrote()
        log.info("replay.recorded", run_id=run_ids[0])
        return True

    async def _finished_run(self, run_id: str, beta: str) -> bytes | None:
        """The run's final object: as retrieved, else the `run` of its result."""
        run = await self._finals.get(Question(AnswerKind.RUN, run_id, beta))
        if run is not None:
            return run
        result = await self._finals.get(Question(AnswerKind.RESULT, run_id, beta))
        if result is None:
            return None
        inner = orjson.loads(result).get("run")  # a stored result is a JSON object
        return orjson.dumps(inner) if isinstance(inner, dict) else None
