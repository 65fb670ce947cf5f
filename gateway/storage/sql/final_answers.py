"""Final answers: the `final_answers` table (results, and run objects whose status is final)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from ..types import AnswerKind, CacheStats, StoredAnswer
from .database import SqlDatabase

# A final answer never changes, so the first stored copy wins and a second put is a no-op.
INSERT = (
    "INSERT INTO final_answers (run_id, kind, beta, body, size, stored_at)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, kind, beta) DO NOTHING"
)
COLUMNS = "SELECT run_id, kind, beta, body, stored_at FROM final_answers"
SCAN_PAGE = 1000


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
        await self.database.write(INSERT, _row(answer))

    async def put_many(self, answers: Iterable[StoredAnswer]) -> int:
        return await self.database.write_many(INSERT, (_row(answer) for answer in answers))

    async def scan(self, run_ids: Sequence[str] = ()) -> AsyncIterator[StoredAnswer]:
        if run_ids:
            for run_id in sorted(set(run_ids)):
                rows = await self.database.fetchall(
                    f"{COLUMNS} WHERE run_id = ? ORDER BY kind, beta", (run_id,)
                )
                for row in rows:
                    yield _answer(row)
            return
        rows = await self.database.fetchall(
            f"{COLUMNS} ORDER BY run_id, kind, beta LIMIT ?", (SCAN_PAGE,)
        )
        while rows:
            for row in rows:
                yield _answer(row)
            if len(rows) < SCAN_PAGE:
                return
            rows = await self.database.fetchall(
                f"{COLUMNS} WHERE (run_id, kind, beta) > (?, ?, ?)"
                " ORDER BY run_id, kind, beta LIMIT ?",
                (*rows[-1][:3], SCAN_PAGE),
            )

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


def _row(answer: StoredAnswer) -> tuple[str, str, str, bytes, int, str]:
    body = answer.body
    return (answer.run_id, answer.kind.value, answer.beta, body, len(body), answer.stored_at)


def _answer(row: tuple[Any, ...]) -> StoredAnswer:
    run_id, kind, beta, body, stored_at = row
    return StoredAnswer(AnswerKind(kind), run_id, beta, bytes(body), stored_at)
