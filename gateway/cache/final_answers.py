"""Final-answer cache: results, finished runs and their event streams, in the memory layer
shared with run inputs, in front of the store. A miss is forwarded by the caller, which offers
the answer back."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from ..storage.health import StorageHealth
from ..storage.protocols import FinalAnswers
from ..storage.types import AnswerKind, StoredAnswer, StoreError
from ..timestamps import now_rfc3339
from .final_policy import answer_key, answer_storability
from .mcp_headers import kept_stream_holds_tokens
from .policy import Storability
from .run_inputs import MemoryLRU

log = structlog.get_logger("gateway.cache")
# How many questions upstream last answered "not final" are remembered (about 100 bytes each).
UNFINISHED_MAX = 10_000


@dataclass(frozen=True, slots=True)
class Question:
    """What a final answer is the answer to: its kind, its run, the parallel-beta set asked."""

    kind: AnswerKind
    run_id: str
    beta: str


class FinalAnswerCache:
    """Final answers: memory, then the store; stored as they come back from upstream.

    A run that upstream last said was unfinished is asked of upstream again without reading
    the store first: apps poll a working run, and each poll would otherwise cost a database
    read that finds nothing. Upstream is the first to know it finished; where upstream cannot
    answer, the caller reads the store after all (`stored`), which another replica may have
    filled meanwhile.
    """

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
        self._unfinished: OrderedDict[str, None] = OrderedDict()  # answer keys, oldest first

    @property
    def max_body_bytes(self) -> int:
        return self._max_body_bytes()

    async def get(self, question: Question) -> bytes | None:
        """The stored answer, None if there is none (or the store cannot say, or the run was
        unfinished when upstream last answered: then it is asked of upstream)."""
        key = answer_key(question.kind, question.run_id, question.beta)
        body = self.memory.get(key)
        if body is not None or key in self._unfinished:
            return body
        return await self.stored(question)

    def seen_unfinished(self, question: Question) -> bool:
        """Whether `get` skipped the store, upstream having last said the run was unfinished."""
        return answer_key(question.kind, question.run_id, question.beta) in self._unfinished

    async def stored(self, question: Question) -> bytes | None:
        """The answer in the store (kept in memory from now on), None if there is none."""
        key = answer_key(question.kind, question.run_id, question.beta)
        try:
            stored = await self._store.get(question.kind, question.run_id, question.beta)
        except StoreError as e:
            self.health.failed(e, "read", run_id=question.run_id)
            return None
        if stored is None:
            return None
        if kept_stream_holds_tokens(stored):
            return None  # it may carry MCP tokens: asked of upstream anew
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
        key = answer_key(question.kind, question.run_id, question.beta)
        decision = answer_storability(question.kind, body, self.max_body_bytes)
        if decision is Storability.NOT_FINAL:
            self._unfinished[key] = None
            self._unfinished.move_to_end(key)
            if len(self._unfinished) > UNFINISHED_MAX:
                self._unfinished.popitem(last=False)
        if decision is not Storability.STORE:
            if decision not in (Storability.NOT_FINAL, Storability.MCP_HEADERS):  # expected
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
        self._unfinished.pop(key, None)
        self.memory.put(key, body)
        return True
