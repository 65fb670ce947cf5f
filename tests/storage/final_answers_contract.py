"""What every backend's FinalAnswers must do, and what a purge does to them; a backend's test
module subclasses this with a `storage` fixture. Only the protocols are spoken here."""

from __future__ import annotations

from gateway.storage.protocols import Storage
from gateway.storage.types import AnswerKind, CacheStats, Purge, StoredAnswer, StoredInput

AT = "2026-01-02T03:04:05.000006Z"
LATER = "2026-01-02T03:04:06.000000Z"
RESULT, RUN, EVENTS = AnswerKind.RESULT, AnswerKind.RUN, AnswerKind.EVENTS
BETA = "events-sse-2025-07-24,mcp-server-2025-07-17"


def answer(
    run_id: str, kind: AnswerKind = RESULT, beta: str = "", body: bytes = b"{}", at: str = AT
) -> StoredAnswer:
    return StoredAnswer(kind, run_id, beta, body, at)


class FinalAnswersContract:
    async def test_an_unknown_answer_is_none(self, storage: Storage) -> None:
        assert await storage.final_answers.get(RESULT, "trun_none", "") is None
        assert not await storage.final_answers.has_run("trun_none")

    async def test_a_body_comes_back_byte_for_byte(self, storage: Storage) -> None:
        body = '{ "output" : "Ünïcode ☃\\u0000",\n "run":{}}'.encode() + b"\0\xff"
        await storage.final_answers.put(answer("trun_bytes", body=body))
        assert await storage.final_answers.get(RESULT, "trun_bytes", "") == answer(
            "trun_bytes", body=body
        )
        assert await storage.final_answers.has_run("trun_bytes")

    async def test_the_first_copy_stays_a_second_put_changes_nothing(
        self, storage: Storage
    ) -> None:
        await storage.final_answers.put(answer("trun_once", body=b'{"a":1}', at=AT))
        await storage.final_answers.put(answer("trun_once", body=b'{"a":2}', at=LATER))
        assert await storage.final_answers.get(RESULT, "trun_once", "") == answer(
            "trun_once", body=b'{"a":1}', at=AT
        )

    async def test_kind_and_beta_set_are_part_of_the_key(self, storage: Storage) -> None:
        await storage.final_answers.put(answer("trun_k", RESULT, "", b"plain"))
        await storage.final_answers.put(answer("trun_k", RESULT, BETA, b"beta"))
        await storage.final_answers.put(answer("trun_k", RUN, "", b"run"))
        await storage.final_answers.put(answer("trun_k", EVENTS, "", b"data: {}\n\n"))
        assert (await storage.final_answers.get(RESULT, "trun_k", "")) == answer(
            "trun_k", RESULT, "", b"plain"
        )
        assert (await storage.final_answers.get(RESULT, "trun_k", BETA)) == answer(
            "trun_k", RESULT, BETA, b"beta"
        )
        assert (await storage.final_answers.get(RUN, "trun_k", "")) == answer(
            "trun_k", RUN, "", b"run"
        )
        assert await storage.final_answers.get(RUN, "trun_k", BETA) is None
        assert (await storage.final_answers.get(EVENTS, "trun_k", "")) == answer(
            "trun_k", EVENTS, "", b"data: {}\n\n"
        )
        assert await storage.final_answers.get(EVENTS, "trun_k", BETA) is None

    async def test_stats_count_each_kind(self, storage: Storage) -> None:
        empty = CacheStats(0, 0, None, None)
        assert await storage.final_answers.stats() == {RESULT: empty, RUN: empty, EVENTS: empty}
        await storage.final_answers.put(answer("trun_a", RESULT, "", b"12345", LATER))
        await storage.final_answers.put(answer("trun_a", RESULT, BETA, b"12", AT))
        await storage.final_answers.put(answer("trun_b", RUN, "", b"123", AT))
        await storage.final_answers.put(answer("trun_b", EVENTS, BETA, b"1234", LATER))
        assert await storage.final_answers.stats() == {
            RESULT: CacheStats(2, 7, AT, LATER),
            RUN: CacheStats(1, 3, AT, AT),
            EVENTS: CacheStats(1, 4, LATER, LATER),
        }

    async def test_a_purge_of_runs_takes_their_answers_with_their_inputs(
        self, storage: Storage
    ) -> None:
        await storage.run_inputs.put(StoredInput("trun_both", b"{}", AT))
        for run_id in ("trun_both", "trun_answered", "trun_kept"):
            await storage.final_answers.put(answer(run_id, RESULT))
            await storage.final_answers.put(answer(run_id, RUN, BETA))
            await storage.final_answers.put(answer(run_id, EVENTS))

        assert await storage.purges.purge(["trun_both", "trun_answered", "trun_never"]) == 2
        assert await storage.run_inputs.get("trun_both") is None
        for run_id in ("trun_both", "trun_answered"):
            assert not await storage.final_answers.has_run(run_id)
        assert await storage.final_answers.get(RUN, "trun_kept", BETA) == answer(
            "trun_kept", RUN, BETA
        )
        seq = await storage.purges.last_purge()
        assert await storage.purges.purges_since(0) == [
            Purge(seq, ["trun_both", "trun_answered", "trun_never"])
        ]

    async def test_a_purge_of_all_takes_every_answer(self, storage: Storage) -> None:
        await storage.run_inputs.put(StoredInput("trun_a", b"{}", AT))
        await storage.final_answers.put(answer("trun_a", RESULT))
        await storage.final_answers.put(answer("trun_b", RUN))
        await storage.final_answers.put(answer("trun_c", EVENTS))
        assert await storage.purges.purge(None) == 3
        empty = CacheStats(0, 0, None, None)
        assert await storage.final_answers.stats() == {RESULT: empty, RUN: empty, EVENTS: empty}

    async def test_put_many_stores_the_new_answers_and_counts_them(self, storage: Storage) -> None:
        await storage.final_answers.put(answer("trun_a", RESULT, body=b"first"))
        batch = [
            answer("trun_a", RESULT, body=b"second"),  # already there: kept as it was
            answer("trun_a", EVENTS, BETA, b"data: {}\n\n"),
            answer("trun_b", RUN, body=b'{"status":"failed"}'),
        ]
        assert await storage.final_answers.put_many(batch) == 2
        assert await storage.final_answers.put_many(batch) == 0
        assert await storage.final_answers.get(RESULT, "trun_a", "") == answer(
            "trun_a", RESULT, body=b"first"
        )
        assert await storage.final_answers.get(EVENTS, "trun_a", BETA) == batch[1]

    async def test_scan_gives_every_answer_in_order_or_those_of_the_runs_named(
        self, storage: Storage
    ) -> None:
        stored = [
            answer(f"trun_{n:04d}", kind, beta, b"\0\xff" + bytes([n % 256]))
            for n in range(1201)  # more than one page
            for kind, beta in ((EVENTS, ""), (RESULT, ""), (RESULT, BETA))
            if n % 3 or kind is RESULT
        ]
        assert await storage.final_answers.put_many(reversed(stored)) == len(stored)
        key = [(a.run_id, a.kind.value, a.beta) for a in stored]
        assert key == sorted(key)
        assert [a async for a in storage.final_answers.scan()] == stored
        named = [a async for a in storage.final_answers.scan(["trun_0001", "trun_0000", "trun_x"])]
        assert named == stored[:5]
