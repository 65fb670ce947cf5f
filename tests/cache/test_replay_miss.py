"""Why a create missed, with no server: the nearest recordings, their differing fields, and
never a value."""

from __future__ import annotations

import orjson

from gateway.cache.match_key import MatchKey, match_key
from gateway.cache.replay_miss import NEAREST, explain_miss
from gateway.storage.types import Recording

SECRET_INPUT = "the quarterly numbers nobody may see"
WHY = "the gateway is offline"


def key_of(**body: object) -> MatchKey:
    key = match_key(orjson.dumps(body), ())
    assert key is not None
    return key


def recorded(run_id: str, at: str, **body: object) -> Recording:
    key = key_of(**body)
    return Recording("ci", key.hash, dict(key.fields), run_id, at)


def test_the_nearest_have_most_fields_in_common_then_are_newest() -> None:
    meta = {"a": 1}
    asked = key_of(processor="lite", input=SECRET_INPUT, metadata=meta)
    pool = [
        recorded("trun_far", "2026-11-28T10:00:03Z", processor="pro", input="x"),
        recorded("trun_old", "2026-11-27T10:00:00Z", processor="lite", input="y", metadata=meta),
        recorded("trun_new", "2026-11-28T10:00:01Z", processor="lite", input="z", metadata=meta),
        recorded("trun_mid", "2026-11-28T10:00:02Z", processor="lite", input="w"),
        recorded(
            "trun_same", "2026-11-28T10:00:04Z", processor="lite", input=SECRET_INPUT, metadata=meta
        ),
    ]
    miss = explain_miss(asked, [], pool, WHY)
    nearest = [(n["run_id"], n["differs_in"]) for n in miss.detail["nearest"]]
    assert len(nearest) == NEAREST
    assert nearest == [  # the exact match itself (trun_same) is not a "nearest" one
        ("trun_new", ["input"]),
        ("trun_old", ["input"]),
        ("trun_mid", ["input", "metadata"]),
    ]
    assert miss.message == (
        "No finished recording of this create to replay: looked for processor 'lite' with fields "
        "input, metadata, processor. Nearest recording (trun_new, 2026-11-28) differs in: input. "
        "Nearest recording (trun_old, 2026-11-27) differs in: input. Nearest recording "
        "(trun_mid, 2026-11-28) differs in: input, metadata. Not sent upstream: the gateway is "
        "offline."
    )
    assert SECRET_INPUT not in miss.message
    assert SECRET_INPUT not in repr(miss.detail)


def test_an_unfinished_recording_of_the_same_create_is_named() -> None:
    asked = key_of(processor="lite", input="x")
    same = recorded("trun_running", "2026-11-28T10:00:00Z", processor="lite", input="x")
    miss = explain_miss(asked, [same], [same], WHY)
    assert miss.detail["unfinished"] == [
        {"run_id": "trun_running", "recorded_at": "2026-11-28T10:00:00Z"}
    ]
    assert miss.detail["nearest"] == []
    assert "This create was recorded (trun_running, 2026-11-28), but that run never finished" in (
        miss.message
    )
    assert "no other recording" not in miss.message


def test_no_recording_at_all_says_so() -> None:
    miss = explain_miss(key_of(processor="lite", input="x"), [], [], WHY)
    assert miss.message.endswith(
        "There is no other recording to compare it with. Not sent upstream: the gateway is offline."
    )
