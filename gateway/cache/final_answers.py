"""Final-answer cache: results, finished runs and their event streams, in the memory layer
shared with run inputs, in front of the store. A miss is forwarded by the caller, which offers
the answer back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from ..storage.health import StorageHealth
from ..storage.protocols import FinalAnswers
from ..storage.types import AnswerKind, StoredAnswer, StoreError
from ..timestamps import now_rfc3339
from .final_policy import answer_key, answer_storability
from .policy import Storability
from .run_inputs import MemoryLRU

log = structlog.get_logger("gateway.cache")


@dataclass(frozen=True, slots=True)
class Question:
    """What a final answer is the answer to: its kind, its run, the parallel-beta set asked."""

    kind: AnswerKind
    run_id: str
    beta: str


class FinalAnswerCache:
    """Final answers: memory, then the store; stored as they come back from upstream."""

    def __init__(
        self,
        memory: MemoryLRU,
        store: FinalAnswers,
        health: StorageHealth,
        max_body_bytes: Callable[[], int],  # cache.max_body_bytes as now in force (SIGHUP)
    ) -> None:
        self.memory = memory
        self.health = health
        self._store = store
        self._max_body_bytes = max_body_bytes

    @property
    def max_body_bytes(self) -> int:
        return self._max_body_bytes()

    async def get(self, question: Question) -> bytes | None:
        """The stored answer, None if there is none (or the store cannot say: then it is asked
        of upstream again)."""
        key = answer_key(question.kind, question.run_id, question.beta)
        body = self.memory.get(key)
        if body is not None:
            return body
        try:
            stored = await self._store.get(question.kind, question.run_id, question.beta)
        except StoreError as e:
            self.health.failed(e, "read", run_id=question.run_id)
            return None
        if stored is None:
            return None
        self.memory.put(key, stored.body)
        return stored.body

    async def known_finished(self, run_id: str) -> bool:
        """Whether the run is known to have finished: some final answer of it is stored (each
        kind is stored only once the run has finished). False if the store cannot say."""
        try:
            return await self._store.has_run(run_id)
        except StoreError as e:
            self.health.failed(e, "read", run_id=run_id)
            return False

    async def keep(self, question: Question, body: bytes) -> bool:
        """Store upstream's 200 `body` if it is final; whether it is now stored."""
        decision = answer_storability(question.kind, body, self.max_body_bytes)
        if decision is not Storability.STORE:
            if decision is not Storability.NOT_FINAL:
                log.warning(
                    "cache.not_stored",
                    run_id=question.run_id,
                    kind=question.kind.value,
                    reason=decision.value,
                    size=len(body),
                )
            return False
        answer = StoredAnswer(question.kind, question.run_id, question.beta, body, now_rfc3339())
        try:
            # Shielded: an app that hangs up must not cancel a write others will read.
            await asyncio.shield(self._store.put(answer))
        except Exception as e:
            # The app still gets its answer; only the promise "stored" is withheld.
            self.health.failed(e, "write", run_id=question.run_id)
            return False
        self.health.wrote()
        self.memory.put(answer_key(question.kind, question.run_id, question.beta), body)
        return True
