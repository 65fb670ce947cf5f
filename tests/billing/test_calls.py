"""Which calls are billed, of what kind and processor: table-driven, no server."""

from __future__ import annotations

import orjson
import pytest

from gateway.billing.calls import (
    BILLABLE,
    EXTRACT,
    FINDALL,
    GROUP_RUN,
    MONITOR,
    SEARCH,
    TASK_RUN,
    Made,
    calls_made,
)
from gateway.billing.tally import Tally
from gateway.http.catalog import classify
from gateway.storage.types import CallCount


def j(value: object) -> bytes:
    return orjson.dumps(value)


def test_billable_routes_are_catalogued_routes() -> None:
    routes = {
        ("POST", "/v1/tasks/runs"): TASK_RUN,
        ("POST", "/v1/tasks/groups/tgrp_1/runs"): GROUP_RUN,
        ("POST", "/v1/search"): SEARCH,
        ("POST", "/v1/extract"): EXTRACT,
        ("POST", "/v1beta/findall/runs"): FINDALL,
        ("POST", "/v1/monitors"): MONITOR,
    }
    found = {}
    for (method, path), kind in routes.items():
        route = classify(method, path)
        assert route is not None
        assert route.catalogued
        found[route.name] = kind
    assert found == dict(BILLABLE)


@pytest.mark.parametrize(
    ("kind", "request_body", "answer", "made"),
    [
        # A create: the processor upstream confirms wins over the one asked for.
        (TASK_RUN, j({"processor": "core"}), j({"processor": "core"}), {"core": 1}),
        (TASK_RUN, j({"processor": "core"}), j({"processor": "core-fast"}), {"core-fast": 1}),
        (TASK_RUN, j({"processor": "pro"}), j({"run_id": "trun_1"}), {"pro": 1}),
        (TASK_RUN, None, j({"processor": "lite"}), {"lite": 1}),
        (TASK_RUN, b"not json", b"[1]", {None: 1}),
        (TASK_RUN, j({"processor": 7}), j({"processor": ""}), {None: 1}),
        # A group's added runs, one by one.
        (
            GROUP_RUN,
            j({"inputs": [{"processor": "lite"}, {"processor": "lite"}, {"processor": "base"}]}),
            j({"run_ids": ["a", "b", "c"]}),
            {"lite": 2, "base": 1},
        ),
        (GROUP_RUN, j({"inputs": [{"processor": "core"}]}), j({}), {"core": 1}),
        # A body that could not be read (streamed): upstream's count, processor unknown.
        (GROUP_RUN, None, j({"run_ids": ["a", "b"]}), {None: 2}),
        (GROUP_RUN, j({"inputs": [{"processor": "core"}]}), j({"run_ids": ["a", "b"]}), {None: 2}),
        (GROUP_RUN, None, j({"run_ids": []}), {}),
        (FINDALL, j({"generator": "base"}), j({"generator": "core"}), {"core": 1}),
        (FINDALL, j({"generator": "base"}), j({}), {"base": 1}),
        (SEARCH, j({"mode": "agentic"}), j({}), {None: 1}),
        (EXTRACT, j({"urls": ["a", "b"]}), j({}), {None: 1}),
        (MONITOR, j({}), j({}), {None: 1}),
    ],
)
def test_calls_made(kind: str, request_body: bytes | None, answer: bytes, made: Made) -> None:
    assert calls_made(kind, request_body, answer) == made


def test_a_tally_hands_over_its_counts_once_and_takes_back_what_was_not_stored() -> None:
    tally = Tally()
    tally.count_calls("a", TASK_RUN, {"core": 1})
    tally.count_calls("a", TASK_RUN, {"core": 2, None: 1})
    tally.count_saved("a", TASK_RUN, "core")
    tally.count_saved("b", "run_input")

    taken = tally.take("2026-03-01")
    assert sorted(taken, key=repr) == sorted(
        [
            CallCount("a", "2026-03-01", TASK_RUN, "core", 3, 1),
            CallCount("a", "2026-03-01", TASK_RUN, None, 1, 0),
            CallCount("b", "2026-03-01", "run_input", None, 0, 1),
        ],
        key=repr,
    )
    assert tally.take("2026-03-01") == []

    tally.give_back(taken)
    tally.count_saved("b", "run_input")
    assert sorted(tally.take("2026-03-02"), key=repr) == sorted(
        [
            CallCount("a", "2026-03-02", TASK_RUN, "core", 3, 1),
            CallCount("a", "2026-03-02", TASK_RUN, None, 1, 0),
            CallCount("b", "2026-03-02", "run_input", None, 0, 2),
        ],
        key=repr,
    )
