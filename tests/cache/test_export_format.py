"""The cache export format (gateway/cache/export_format.py): encoding, decoding and its
rejections, no I/O."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from gateway.cache.export_format import (
    EntryError,
    check_entry,
    decode_entry,
    encode_entry,
    normalise_timestamp,
)
from gateway.storage.types import AnswerKind, Recording, StoredAnswer, StoredInput

STAMP = "2026-11-22T07:00:00.000000Z"
TASK_INPUT = {"processor": "core", "input": "What is 2+2?"}
RUN_ID_RULE = "is not 1 to 128 of A-Z, a-z, 0-9, '_', '-'"
BAD_INPUT = "input is not a task run input (an object with processor and input)"


MISSING: Any = object()


def input_of(raw: bytes | str) -> StoredInput:
    entry = decode_entry(raw)
    assert isinstance(entry, StoredInput)
    return entry


def line(**fields: Any) -> bytes:
    """An export line: a valid entry, with `fields` replacing (or, if MISSING, dropping) keys."""
    data: dict[str, Any] = {"version": 1, "run_id": "trun_1", "stored_at": STAMP}
    data["input"] = TASK_INPUT
    data.update(fields)
    return orjson.dumps({k: v for k, v in data.items() if v is not MISSING})


# --- encode_entry ---------------------------------------------------------------------------


def test_encode_gives_the_exact_line() -> None:
    entry = StoredInput("trun_abc", b'{"processor":"core","input":"hello"}', STAMP)
    assert encode_entry(entry) == (
        b'{"version":2,"kind":"input","run_id":"trun_abc","stored_at":"2026-11-22T07:00:00.000000Z",'
        b'"input":{"processor":"core","input":"hello"}}\n'
    )


@pytest.mark.parametrize(
    "body",
    [
        # spacing, key order and a float's spelling kept; unknown fields kept
        b'{"input": {"b": 1, "a": 2.50}, "processor": "ultra", "extra": [null, true]}',
        # unicode stays raw UTF-8, not \u-escaped
        '{"processor":"core","input":"café ☕ 日本"}'.encode(),
        # escapes stay escapes: a \n inside a string is two characters, not a newline
        b'{"processor":"core","input":"line1\\nline2 \\u00e9 \\"q\\""}',
        # input as an object with nested structure
        b'{"processor":"pro","input":{"q":{"deep":[1,{"x":"y"}]}},"task_spec":null}',
    ],
    ids=["spacing-order-unknown", "unicode", "escapes", "nested"],
)
def test_encode_embeds_the_body_as_it_is(body: bytes) -> None:
    encoded = encode_entry(StoredInput("trun_1", body, STAMP))
    assert encoded == (
        b'{"version":2,"kind":"input","run_id":"trun_1","stored_at":"2026-11-22T07:00:00.000000Z",'
        b'"input":' + body + b"}\n"
    )
    assert orjson.loads(encoded)["input"] == orjson.loads(body)


@pytest.mark.parametrize(
    ("body", "embedded"),
    [
        (
            b'{\n  "processor": "core",\n  "input": "x"\n}\n',
            b'{  "processor": "core",  "input": "x"}',
        ),
        (
            b'{\r\n"processor":\r"core",\r\n"input":{"a":\n1}}\r\n',
            b'{"processor":"core","input":{"a":1}}',
        ),
        (b'\n\n{"processor":"core","input":"x"}', b'{"processor":"core","input":"x"}'),
    ],
    ids=["lf", "crlf-and-cr", "leading-newlines"],
)
def test_encode_of_a_body_with_line_breaks_is_one_line(body: bytes, embedded: bytes) -> None:
    encoded = encode_entry(StoredInput("trun_1", body, STAMP))
    assert encoded.count(b"\n") == 1
    assert encoded.endswith(b"\n")
    assert b"\r" not in encoded
    assert encoded.endswith(b'"input":' + embedded + b"}\n")
    assert orjson.loads(encoded)["input"] == orjson.loads(body)


@pytest.mark.parametrize(
    "entry",
    [
        StoredInput("trun_1", b'{"processor":"core","input":"hello"}', STAMP),
        StoredInput("a", b'{"input": {"z": 1, "a": [1.5, null]}, "processor": "x"}', STAMP),
        StoredInput("_" * 128, '{"processor":"lite","input":"ü\\n€"}'.encode(), STAMP),
        StoredInput("trun-x", b'{\r\n "processor": "core",\n "input": "x", "new": {}\n}', STAMP),
        StoredInput("Z9", b'{"processor":"core","input":"x"}', "1999-12-31T23:59:59.999999Z"),
    ],
    ids=["plain", "key-order", "unicode", "line-breaks", "old-stamp"],
)
def test_decode_of_encode_gives_back_the_entry(entry: StoredInput) -> None:
    decoded = input_of(encode_entry(entry))
    assert decoded.run_id == entry.run_id
    assert decoded.stored_at == entry.stored_at
    assert orjson.loads(decoded.body) == orjson.loads(entry.body)
    # key order is part of what an app sees, so it survives too
    assert list(orjson.loads(decoded.body)) == list(orjson.loads(entry.body))


def test_decode_accepts_str_and_a_trailing_newline() -> None:
    raw = encode_entry(StoredInput("trun_1", b'{"processor":"core","input":"x"}', STAMP))
    assert decode_entry(raw.decode()) == decode_entry(raw.rstrip(b"\n"))
    assert decode_entry(raw.replace(b"\n", b"\r\n")).run_id == "trun_1"


def test_decode_keeps_unicode_and_unknown_fields() -> None:
    task_input = {"processor": "core", "input": {"q": "日本"}, "future_field": [1, 2]}
    entry = input_of(line(input=task_input))
    assert orjson.loads(entry.body) == task_input
    assert "日本".encode() in entry.body


# Bodies a parse and re-encode would change: each must come back byte for byte.
EXACT_BODIES = {
    "big-integer": b'{"processor":"core","input":{"account_id":123456789012345678901234567890}}',
    "trailing-zero": b'{"processor":"core","input":{"ratio":1.10}}',
    "exponent": b'{"processor":"core","input":{"tiny":1e-7,"big":1E+300,"neg":-0.0}}',
    "u-escapes": b'{"processor":"core","input":{"name":"caf\\u00e9","x":"\\u0000\\uD83D\\uDE00"}}',
    "raw-u2028": '{"processor":"core","input":"a\u2028b\u2029c"}'.encode(),
    "escaped-u2028": b'{"processor":"core","input":"a\\u2028b"}',
    "escaped-slash": b'{"processor":"core","input":"a\\/b \\\\ \\" \\b\\f\\t"}',
    "irregular-whitespace": b'{ \t"processor" :\t"core" ,  "input":{"a":[ 1 ,\t{ } , [ ] ]} \t}',
    "decoys": b'{"input":{"input":"inner","processor":"x"},"processor":"core","s":"\\"input\\":1"}',
}


@pytest.mark.parametrize("body", EXACT_BODIES.values(), ids=EXACT_BODIES.keys())
def test_decode_keeps_the_input_byte_for_byte(body: bytes) -> None:
    encoded = encode_entry(StoredInput("trun_1", body, STAMP))
    assert input_of(encoded).body == body
    assert input_of(encoded.decode()).body == body


@pytest.mark.parametrize(
    ("raw", "body"),
    [
        (
            b' {\t"input" \r\n:\t {"processor":"core","input":{"n":2.50}}\t, "version":1,'
            b'"run_id":"r","stored_at":"2026-11-22T07:00:00Z"}\r\n',
            b'\t {"processor":"core","input":{"n":2.50}}\t',
        ),
        (
            b'{"version":1,"run_id":"r","stored_at":"2026-11-22T07:00:00Z",'
            b'"\\u0069nput":{"processor":"core","input":{"n":1.0}}}',
            b'{"processor":"core","input":{"n":1.0}}',
        ),
        (
            b'{"version":1,"run_id":"r","stored_at":"2026-11-22T07:00:00Z","inputs":[1],'
            b'"input":{"processor":"core","input":"x"},"in\\"put":{"input":3}}',
            b'{"processor":"core","input":"x"}',
        ),
    ],
    ids=["first-member-and-whitespace", "escaped-name", "lookalike-names"],
)
def test_decode_finds_the_input_member_wherever_it_is(raw: bytes, body: bytes) -> None:
    assert input_of(raw).body == body


@pytest.mark.parametrize(
    "raw",
    [
        b'{"version":1,"run_id":"r","stored_at":"2026-11-22T07:00:00Z",'
        b'"input":{"processor":"core","input":"first"},"input":{"processor":"core","input":"2"}}',
        b'{"version":1,"run_id":"r","stored_at":"2026-11-22T07:00:00Z",'
        b'"input":"junk","\\u0069nput":{"processor":"core","input":"2"}}',
    ],
    ids=["twice", "twice-once-escaped"],
)
def test_decode_refuses_an_input_given_twice(raw: bytes) -> None:
    with pytest.raises(EntryError) as caught:
        decode_entry(raw)
    assert str(caught.value) == "input appears more than once"


def test_decode_refuses_an_input_nested_deeper_than_python_reads() -> None:
    # orjson reads 1,024 levels; Python's scanner, which finds the raw text, fewer.
    deep = b"[" * 1020 + b"]" * 1020
    raw = line(input=orjson.Fragment(b'{"processor":"core","input":{"a":' + deep + b"}}"))
    with pytest.raises(EntryError) as caught:
        decode_entry(raw)
    assert str(caught.value) == "input is nested too deeply"


# --- decode_entry rejections ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"not json", "not JSON (invalid literal, expected 'null')"),
        (b"{bad", "not JSON (unexpected character, expected a string key)"),
        (b'{"version": 1,', "not JSON (unexpected end of data)"),
        (b"[1, 2]", "not a JSON object"),
        (b'"a string"', "not a JSON object"),
        (b"null", "not a JSON object"),
        (line(version=MISSING), "unsupported version None; this gateway reads versions 1, 2"),
        (line(version=3), "unsupported version 3; this gateway reads versions 1, 2"),
        (line(version=0), "unsupported version 0; this gateway reads versions 1, 2"),
        (line(version="1"), "unsupported version '1'; this gateway reads versions 1, 2"),
        (line(version=True), "unsupported version True; this gateway reads versions 1, 2"),
        (line(version=None), "unsupported version None; this gateway reads versions 1, 2"),
        (line(run_id=MISSING), f"run_id None {RUN_ID_RULE}"),
        (line(run_id="a/b"), f"run_id 'a/b' {RUN_ID_RULE}"),
        (line(run_id=".."), f"run_id '..' {RUN_ID_RULE}"),
        (line(run_id=""), f"run_id '' {RUN_ID_RULE}"),
        (line(run_id="a" * 129), f"run_id '{'a' * 129}' {RUN_ID_RULE}"),
        (line(run_id="a b"), f"run_id 'a b' {RUN_ID_RULE}"),
        (line(run_id=7), f"run_id 7 {RUN_ID_RULE}"),
        (line(stored_at=MISSING), "stored_at None is not an RFC 3339 timestamp"),
        (line(stored_at=1767225600), "stored_at 1767225600 is not an RFC 3339 timestamp"),
        (line(stored_at="yesterday"), "stored_at 'yesterday' is not an RFC 3339 timestamp"),
        (
            line(stored_at="2026-02-30T00:00:00Z"),
            "stored_at '2026-02-30T00:00:00Z' is not an RFC 3339 timestamp",
        ),
        (line(stored_at="2026-01-02T00:00:00"), "stored_at '2026-01-02T00:00:00' has no time zone"),
        (line(input=MISSING), BAD_INPUT),
        (line(input="core: hello"), BAD_INPUT),
        (line(input=[TASK_INPUT]), BAD_INPUT),
        (line(input=None), BAD_INPUT),
        (line(input={"input": "x"}), BAD_INPUT),
        (line(input={"processor": 5, "input": "x"}), BAD_INPUT),
        (line(input={"processor": "core"}), BAD_INPUT),
        (line(input={"processor": "core", "input": None}), BAD_INPUT),
        (line(input={"processor": "core", "input": 42}), BAD_INPUT),
    ],
)
def test_decode_rejects_with_a_message_saying_why(raw: bytes, message: str) -> None:
    with pytest.raises(EntryError) as caught:
        decode_entry(raw)
    assert str(caught.value) == message


def test_the_first_problem_is_reported() -> None:
    """Checked in order: version, run_id, stored_at, input."""
    raw = line(version=3, run_id="a/b", stored_at="x", input=None)
    with pytest.raises(EntryError, match=r"^unsupported version 3;"):
        decode_entry(raw)
    with pytest.raises(EntryError, match=r"^run_id 'a/b' "):
        decode_entry(line(run_id="a/b", stored_at="x", input=None))
    with pytest.raises(EntryError, match=r"^stored_at 'x' "):
        decode_entry(line(stored_at="x", input=None))


def test_entry_error_is_a_value_error() -> None:
    assert issubclass(EntryError, ValueError)


# --- stored_at normalisation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "normalised"),
    [
        ("2026-01-02T00:00:00+01:00", "2026-01-01T23:00:00.000000Z"),
        ("2026-01-01T23:30:00-02:30", "2026-01-02T02:00:00.000000Z"),
        ("2026-01-02T00:00:00Z", "2026-01-02T00:00:00.000000Z"),
        ("2026-01-02T00:00:00+00:00", "2026-01-02T00:00:00.000000Z"),
        ("2026-01-02T00:00:00-00:00", "2026-01-02T00:00:00.000000Z"),
        ("2026-11-22T07:00:00.000000Z", "2026-11-22T07:00:00.000000Z"),
        ("2026-01-02T00:00:00.5Z", "2026-01-02T00:00:00.500000Z"),
        ("2026-01-02T00:00:00.123Z", "2026-01-02T00:00:00.123000Z"),
        ("2026-01-02T00:00:00.123456Z", "2026-01-02T00:00:00.123456Z"),
        ("2026-01-02T00:00:00.123456+05:30", "2026-01-01T18:30:00.123456Z"),
        ("2026-01-02 00:00:00Z", "2026-01-02T00:00:00.000000Z"),
        ("2026-01-02t00:00:00Z", "2026-01-02T00:00:00.000000Z"),
        ("2024-02-29T23:59:59.999999-00:01", "2024-03-01T00:00:59.999999Z"),
    ],
)
def test_stored_at_is_normalised_to_utc(given: str, normalised: str) -> None:
    assert normalise_timestamp(given) == normalised
    assert input_of(line(stored_at=given)).stored_at == normalised


def test_normalised_stamps_sort_as_text_in_time_order() -> None:
    given = ["2026-01-02T00:30:00+01:00", "2026-01-01T23:45:00Z", "2026-01-01T18:00:00-05:00"]
    stamps = [normalise_timestamp(g) for g in given]
    assert stamps == [
        "2026-01-01T23:30:00.000000Z",
        "2026-01-01T23:45:00.000000Z",
        "2026-01-01T23:00:00.000000Z",
    ]
    assert sorted(stamps) == [stamps[2], stamps[0], stamps[1]]


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_an_out_of_range_stored_at_is_an_entry_error(stamp: str) -> None:
    with pytest.raises(EntryError) as caught:
        decode_entry(line(stored_at=stamp))
    assert str(caught.value) == f"stored_at '{stamp}' is out of range"


def test_a_lower_case_z_is_rfc_3339() -> None:
    assert normalise_timestamp("2026-01-02T00:00:00z") == "2026-01-02T00:00:00.000000Z"


# --- version 2: final answers ---------------------------------------------------------------

STREAM = (
    b'event: task_run.state\r\ndata: {"type":"task_run.state","run":{"status":"running"}}\r\n\r\n'
    b'event: task_run.state\r\ndata: {"type":"task_run.state","run":{"status":"completed"}}\r\n\r\n'
)


def answer_line(**fields: Any) -> bytes:
    """A version 2 result line, with `fields` replacing (or, if MISSING, dropping) keys."""
    data: dict[str, Any] = {"version": 2, "kind": "result", "run_id": "trun_1"}
    data |= {"stored_at": STAMP, "beta": "", "body": "e30="}  # {}
    data.update(fields)
    return orjson.dumps({k: v for k, v in data.items() if v is not MISSING})


def test_an_answer_line_holds_its_body_in_base64() -> None:
    entry = StoredAnswer(AnswerKind.EVENTS, "trun_abc", "a,b", b"data: \xff\0\n\n", STAMP)
    assert encode_entry(entry) == (
        b'{"version":2,"kind":"events","run_id":"trun_abc","stored_at":"2026-11-22T07:00:00.000000Z",'
        b'"beta":"a,b","body":"ZGF0YTog/wAKCg=="}\n'
    )


@pytest.mark.parametrize(
    "entry",
    [
        StoredAnswer(AnswerKind.EVENTS, "trun_1", "", STREAM, STAMP),
        StoredAnswer(AnswerKind.RESULT, "trun_1", "b-1,b-2", b'{\r\n "output" : 1.10 }\n', STAMP),
        StoredAnswer(AnswerKind.RUN, "a" * 128, "", b'{"status":"cancelled","x":"\\u00e9"}', STAMP),
    ],
    ids=["events-crlf", "result-spacing", "run-escapes"],
)
def test_decode_of_encode_gives_back_every_byte_of_an_answer(entry: StoredAnswer) -> None:
    encoded = encode_entry(entry)
    assert encoded.count(b"\n") == 1
    assert decode_entry(encoded) == entry
    check_entry(entry, max_body_bytes=1000)


def test_a_beta_set_is_read_normalised() -> None:
    decoded = decode_entry(answer_line(beta=" b, a,b"))
    assert isinstance(decoded, StoredAnswer)
    assert decoded.beta == "a,b"


def test_a_version_1_line_is_a_run_input_whatever_else_it_holds() -> None:
    decoded = decode_entry(line(kind="result", body="e30="))
    assert decoded == StoredInput("trun_1", orjson.dumps(TASK_INPUT), STAMP)


KINDS_READ = "is not one this gateway reads (input, result, run, events, recording)"
NOT_FIELDS = "fields is not an object of field names to 16-hex-digit hashes"
RECORDING = Recording(
    "app-tests", "a" * 64, {"input": "0" * 16, "processor": "f" * 16}, "trun_1", STAMP
)


def recording_line(**fields: Any) -> bytes:
    line = orjson.loads(encode_entry(RECORDING))
    return orjson.dumps({**line, **fields})


def test_a_recording_line_holds_hashes_and_comes_back_whole() -> None:
    raw = encode_entry(RECORDING)
    assert orjson.loads(raw) == {
        "version": 2,
        "kind": "recording",
        "run_id": "trun_1",
        "stored_at": STAMP,
        "app": "app-tests",
        "match_hash": "a" * 64,
        "fields": {"input": "0" * 16, "processor": "f" * 16},
    }
    assert decode_entry(raw) == RECORDING


NOT_BETA = "is not a string (the parallel-beta set, '' for none)"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (answer_line(kind=MISSING), f"kind None {KINDS_READ}"),
        (answer_line(kind="trace"), f"kind 'trace' {KINDS_READ}"),
        (
            answer_line(kind="recording"),
            "app None is not an app name (1 to 64 printable characters)",
        ),
        (recording_line(match_hash="ABC"), "match_hash is not a SHA-256 in lower-case hex"),
        (recording_line(fields={"input": "x"}), NOT_FIELDS),
        (recording_line(fields=["input"]), NOT_FIELDS),
        (answer_line(kind=["run"]), f"kind ['run'] {KINDS_READ}"),
        (answer_line(run_id="a/b"), f"run_id 'a/b' {RUN_ID_RULE}"),
        (answer_line(beta=None), f"beta None {NOT_BETA}"),
        (answer_line(beta=MISSING), f"beta None {NOT_BETA}"),
        (answer_line(beta=7), f"beta 7 {NOT_BETA}"),
        (answer_line(body=MISSING), "body is not a string (the answer in base64)"),
        (answer_line(body={}), "body is not a string (the answer in base64)"),
        (answer_line(body="e30"), "body is not base64"),
        (answer_line(body="e3 0="), "body is not base64"),
        (answer_line(kind="input", body=MISSING), BAD_INPUT),
    ],
)
def test_decode_rejects_a_bad_version_2_line_saying_why(raw: bytes, message: str) -> None:
    with pytest.raises(EntryError) as caught:
        decode_entry(raw)
    assert str(caught.value) == message


def b64(body: bytes) -> str:
    return base64.b64encode(body).decode()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (answer_line(body=b64(b"[]")), "result is not a final answer (malformed)"),
        (answer_line(body=b64(b"<html>")), "result is not a final answer (not-json)"),
        (
            answer_line(kind="run", body=b64(b'{"status":"running"}')),
            "run is not a final answer (not-final)",
        ),
        (
            answer_line(kind="events", body=b64(STREAM[: STREAM.index(b"event", 1)])),
            "events is not a final answer (not-final)",
        ),
        (  # its last event never ended
            answer_line(kind="events", body=b64(b'data: {"type":"task_run.state"}\n')),
            "events is not a final answer (malformed)",
        ),
        (answer_line(body=b64(b'{"pad":"' + b"x" * 100 + b'"}')), "result is 110 bytes, over 100"),
        (line(input={"processor": "core", "input": "x" * 100}), "input is 131 bytes, over 100"),
    ],
)
def test_an_entry_the_gateway_would_not_store_is_refused(raw: bytes, message: str) -> None:
    with pytest.raises(EntryError) as caught:
        check_entry(decode_entry(raw), max_body_bytes=100)
    assert str(caught.value) == message
