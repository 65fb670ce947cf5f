"""Final answers: the `final_answers` table (results, and run objects whose status is final)."""

from __future__ import annotations

from ..types import AnswerKind, CacheStats, StoredAnswer
from .database import SqlDatabase

# A final answer never changes, so the first stored copy wins and a second put is a no-op.
INSERT = (
    "INSERT INTO final_answers (run_id, kind, beta, body, size, stored_at)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, kind, beta) DO NOTHING"
)


class SqlFinalAnswers:
    """FinalAnswers over one database."""

    def __init__(self, database: SqlDatabase) -> None:
        self.database = database

    async def get(self, kind: AnswerKind, run_id: str, beta: str) -> StoredAnswer | None:
        row = await self.database.fetchone(
            "SELECT body, stored_at FROM final_answers WHERE run_id = ? AND kind = ? AND beta = ?",
            (run_id, kind.value, beta),
        )
        if row is None:
            return None
        return StoredAnswer(kind, run_id, beta, bytes(row[0]), row[1])

    async def put(self, answer: StoredAnswer) -> None:
        body = answer.body
        row = (answer.run_id, answer.kind.value, answer.beta, body, len(body), answer.stored_at)
        await self.database.write(INSERT, row)

    async def has_run(self, run_id: str) -> bool:
        row = await self.database.fetchone(
            "SELECT 1 FROM final_answers WHERE run_id = ? LIMIT 1", (run_id,)
        )
        return row is not None

    async def stats(self) -> dict[AnswerKind, CacheStats]:
        rows = await self.database.fetchall(
            "SELECT kind, count(*), coalesce(sum(size), 0), min(stored_at), max(stored_at)"
            " FROM final_answers GROUP BY kind"
        )
        found = {kind: CacheStats(*rest) for kind, *rest in rows}
        return {kind: found.get(kind.value, CacheStats(0, 0, None, None)) for kind in AnswerKind}
