"""The memory LRU in front of the store: recency, entry and byte limits, byte accounting."""

from __future__ import annotations

import pytest

from gateway.cache.final_policy import answer_key
from gateway.cache.run_inputs import MemoryLRU
from gateway.storage.types import AnswerKind


def contents(lru: MemoryLRU, run_ids: str) -> dict[str, bytes | None]:
    """What `get` answers for each one-letter run id (note: `get` refreshes recency)."""
    return {run_id: lru.get(run_id) for run_id in run_ids}


def test_get_and_put() -> None:
    lru = MemoryLRU(max_entries=10, max_bytes=100)
    assert lru.get("a") is None
    lru.put("a", b"alpha")
    lru.put("b", b"beta")
    assert lru.get("a") == b"alpha"
    assert lru.get("b") == b"beta"
    assert lru.get("c") is None
    assert len(lru) == 2
    assert lru.bytes == 9


def test_empty_body_is_kept() -> None:
    lru = MemoryLRU(max_entries=2, max_bytes=10)
    lru.put("a", b"")
    assert lru.get("a") == b""
    assert len(lru) == 1
    assert lru.bytes == 0


@pytest.mark.parametrize(
    ("touch", "kept", "evicted"),
    [
        pytest.param("", "bc", "a", id="oldest-evicted"),
        pytest.param("a", "ac", "b", id="get-refreshes"),
        pytest.param("ab", "bc", "a", id="last-get-wins"),
        pytest.param("x", "bc", "a", id="get-of-missing-changes-nothing"),
    ],
)
def test_lru_order(touch: str, kept: str, evicted: str) -> None:
    lru = MemoryLRU(max_entries=2, max_bytes=100)
    lru.put("a", b"A")
    lru.put("b", b"B")
    for run_id in touch:
        lru.get(run_id)
    lru.put("c", b"C")
    assert len(lru) == 2
    assert contents(lru, evicted) == dict.fromkeys(evicted)
    assert contents(lru, kept) == {run_id: run_id.upper().encode() for run_id in kept}
    assert lru.bytes == 2


def test_put_again_refreshes_recency() -> None:
    lru = MemoryLRU(max_entries=2, max_bytes=100)
    lru.put("a", b"A")
    lru.put("b", b"B")
    lru.put("a", b"A")
    lru.put("c", b"C")
    assert contents(lru, "abc") == {"a": b"A", "b": None, "c": b"C"}


def test_entry_limit() -> None:
    lru = MemoryLRU(max_entries=3, max_bytes=1000)
    for run_id in "abcde":
        lru.put(run_id, run_id.encode() * 10)
    assert len(lru) == 3
    assert lru.bytes == 30
    assert contents(lru, "abcde") == {
        "a": None,
        "b": None,
        "c": b"c" * 10,
        "d": b"d" * 10,
        "e": b"e" * 10,
    }


@pytest.mark.parametrize(
    ("sizes", "kept", "expected_bytes"),
    [
        pytest.param([4, 4], "ab", 8, id="fits"),
        pytest.param([4, 4, 2], "abc", 10, id="exactly-full"),
        pytest.param([4, 4, 4], "bc", 8, id="one-evicted"),
        pytest.param([3, 3, 3, 9], "d", 9, id="big-body-evicts-three"),
        pytest.param([5, 10], "b", 10, id="max-size-body-evicts-all-others"),
        pytest.param([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], "bcdefghijk", 10, id="many-small"),
    ],
)
def test_byte_limit(sizes: list[int], kept: str, expected_bytes: int) -> None:
    lru = MemoryLRU(max_entries=100, max_bytes=10)
    run_ids = "abcdefghijk"[: len(sizes)]
    for run_id, size in zip(run_ids, sizes, strict=True):
        lru.put(run_id, b"x" * size)
    assert lru.bytes == expected_bytes
    assert len(lru) == len(kept)
    assert [r for r in run_ids if lru.get(r) is not None] == list(kept)


def test_replace_accounts_bytes_once() -> None:
    lru = MemoryLRU(max_entries=10, max_bytes=100)
    lru.put("a", b"x" * 4)
    lru.put("a", b"y" * 6)
    assert lru.get("a") == b"y" * 6
    assert len(lru) == 1
    assert lru.bytes == 6
    lru.put("a", b"z")
    assert lru.bytes == 1


def test_replace_with_bigger_body_evicts_others_not_itself() -> None:
    lru = MemoryLRU(max_entries=10, max_bytes=10)
    lru.put("a", b"x" * 4)
    lru.put("b", b"x" * 4)
    lru.put("b", b"y" * 8)
    assert contents(lru, "ab") == {"a": None, "b": b"y" * 8}
    assert lru.bytes == 8


def test_discard() -> None:
    lru = MemoryLRU(max_entries=10, max_bytes=100)
    lru.put("a", b"x" * 4)
    lru.put("b", b"x" * 6)
    lru.discard("a")
    assert lru.bytes == 6
    assert len(lru) == 1
    assert lru.get("a") is None
    lru.discard("a")
    lru.discard("never-put")
    assert lru.bytes == 6
    lru.discard("b")
    assert lru.bytes == 0
    assert len(lru) == 0


@pytest.mark.parametrize(
    ("size", "kept"),
    [
        pytest.param(10, True, id="exactly-max-bytes"),
        pytest.param(11, False, id="one-over"),
        pytest.param(1000, False, id="far-over"),
    ],
)
def test_body_larger_than_max_bytes_is_not_kept(size: int, kept: bool) -> None:
    lru = MemoryLRU(max_entries=10, max_bytes=10)
    lru.put("big", b"x" * size)
    assert (lru.get("big") is not None) is kept
    assert lru.bytes == (size if kept else 0)


def test_too_large_body_does_not_evict_others() -> None:
    lru = MemoryLRU(max_entries=10, max_bytes=10)
    lru.put("a", b"x" * 5)
    lru.put("big", b"x" * 11)
    assert contents(lru, "a") == {"a": b"x" * 5}
    assert lru.get("big") is None
    assert lru.bytes == 5


def test_resize_evicts_the_least_recently_used_at_once() -> None:
    lru = MemoryLRU(max_entries=4, max_bytes=100)
    for run_id in "abcd":
        lru.put(run_id, b"12345")
    lru.get("a")  # now the most recent
    lru.resize(max_entries=3, max_bytes=10)
    assert (len(lru), lru.bytes) == (2, 10)
    assert contents(lru, "abcd") == {"a": b"12345", "b": None, "c": None, "d": b"12345"}
    lru.resize(max_entries=3, max_bytes=100)
    lru.put("e", b"12345")
    assert len(lru) == 3


def test_discard_runs_drops_inputs_and_final_answers_of_those_runs_only() -> None:
    lru = MemoryLRU(max_entries=10, max_bytes=100)
    keys = {
        "a": b"1",
        answer_key(AnswerKind.RESULT, "a", ""): b"22",
        answer_key(AnswerKind.RUN, "a", "x,y"): b"333",
        "ab": b"4444",
        answer_key(AnswerKind.RESULT, "b", ""): b"55555",
    }
    for key, body in keys.items():
        lru.put(key, body)
    lru.discard_runs({"a", "c"})
    assert [key for key in keys if lru.get(key) is not None] == ["ab", "b/result/"]
    assert (len(lru), lru.bytes) == (2, 9)


def test_final_answers_count_against_the_same_bounds() -> None:
    lru = MemoryLRU(max_entries=2, max_bytes=100)
    lru.put("a", b"input")
    lru.put(answer_key(AnswerKind.RESULT, "a", ""), b"result")
    lru.put(answer_key(AnswerKind.RUN, "a", ""), b"run")
    assert lru.get("a") is None  # the least recently used left, whatever its kind
    assert len(lru) == 2
