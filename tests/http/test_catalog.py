"""Route classes, ids and timings for every Parallel route, and dot-segment refusal: pure."""

from __future__ import annotations

import pytest

from gateway.http.catalog import Creates, Route, Timing, classify, path_problem
from gateway.keys.allowlist import AllowError, is_allowed, parse_rule
from gateway.keys.ownership import created_ids

R = "trun_9907962f83aa4d9d98fd7f4bf745d654"
G = "tgrp_1234"


F = "findall_0123456789abcdef0123456789abcdef"
M = "monitor_1"
POLL, STREAM = Timing.LONG_POLL, Timing.STREAM


@pytest.mark.parametrize(
    ("method", "path", "route"),
    [
        ("POST", "/v1/tasks/runs", Route("tasks.runs.create", creates=Creates.RUN)),
        ("GET", f"/v1/tasks/runs/{R}", Route("tasks.runs.retrieve", R, (R,))),
        ("GET", f"/v1/tasks/runs/{R}/input", Route("tasks.runs.input", R, (R,))),
        ("GET", f"/v1/tasks/runs/{R}/result", Route("tasks.runs.result", R, (R,), POLL)),
        ("GET", f"/v1/tasks/runs/{R}/events", Route("tasks.runs.events", R, (R,), STREAM)),
        ("POST", "/v1/tasks/groups", Route("tasks.groups.create", creates=Creates.GROUP)),
        ("GET", f"/v1/tasks/groups/{G}", Route("tasks.groups.retrieve", owned=(G,))),
        (
            "POST",
            f"/v1/tasks/groups/{G}/runs",
            Route("tasks.groups.add_runs", owned=(G,), creates=Creates.GROUP_RUNS),
        ),
        ("GET", f"/v1/tasks/groups/{G}/runs", Route("tasks.groups.runs", None, (G,), STREAM)),
        ("GET", f"/v1/tasks/groups/{G}/events", Route("tasks.groups.events", None, (G,), STREAM)),
        # A group-scoped run names both: each is checked.
        ("GET", f"/v1/tasks/groups/{G}/runs/{R}", Route("tasks.groups.run", R, (G, R))),
        ("POST", "/v1/search", Route("search")),
        ("POST", "/v1/extract", Route("extract")),
        ("POST", "/v1beta/findall/runs", Route("findall.create", creates=Creates.FINDALL)),
        ("GET", f"/v1beta/findall/runs/{F}", Route("findall.retrieve", owned=(F,))),
        ("GET", f"/v1beta/findall/runs/{F}/events", Route("findall.events", None, (F,), STREAM)),
        ("POST", f"/v1beta/findall/runs/{F}/cancel", Route("findall.cancel", owned=(F,))),
        ("POST", "/v1beta/findall/ingest", Route("findall.ingest")),
        ("POST", "/v1/monitors", Route("monitors.create", creates=Creates.MONITOR)),
        ("GET", "/v1/monitors", Route("monitors.list")),
        ("GET", f"/v1/monitors/{M}", Route("monitors.retrieve", owned=(M,))),
        ("POST", f"/v1/monitors/{M}/update", Route("monitors.update", owned=(M,))),
        ("POST", "/v1beta/memory/clear", Route("memory.clear")),
        # Uncatalogued: a method or spelling the catalog does not have gets its family's class.
        ("DELETE", f"/v1/tasks/runs/{R}", Route("v1.delete", catalogued=False)),
        ("POST", f"/v1/tasks/runs/{R}/cancel", Route("v1.post", catalogued=False)),
        ("GET", f"/v1/tasks/runs/{R}/result/", Route("v1.get", catalogued=False)),
        ("GET", f"/v1/tasks//runs/{R}", Route("v1.get", catalogued=False)),
        ("GET", f"/v1/Tasks/runs/{R}", Route("v1.get", catalogued=False)),
        ("GET", f"/v1beta/tasks/runs/{R}/result", Route("v1beta.get", catalogued=False)),
        ("GET", "/v1/monitors/m_1/x", Route("monitors.get", catalogued=False)),
        ("GET", "/v1beta/memory/x", Route("memory.get", catalogued=False)),
        ("GET", "/v1beta/other", Route("v1beta.get", catalogued=False)),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_classify(method: str, path: str, route: Route) -> None:
    assert classify(method, path) == route


@pytest.mark.parametrize("path", ["/", "/v1", "/v1beta", "/v2/tasks", "/healthz", "/admin/v1/"])
def test_paths_outside_the_api_have_no_route(path: str) -> None:
    assert classify("GET", path) is None


def test_asking_for_a_stream_gets_stream_timing_on_any_route() -> None:
    assert classify("GET", "/v1/monitors/m/events/x", "text/event-stream") == Route(
        "monitors.get", timing=Timing.STREAM, catalogued=False
    )


DOTS = "the path may not hold . or .. segments"
SLASH = "the path may not hold a backslash or an encoded / or \\ (%2F, %5C)"
ESCAPED = "the path may not percent-encode letters, digits or -._~"


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("/v1/tasks/runs/../x", DOTS),
        ("/v1/tasks/./runs", DOTS),
        ("/v1/tasks/runs/%2e%2E/x", DOTS),
        ("/v1/tasks/runs/.%2e", DOTS),
        ("/v1/tasks/runs/%2E", DOTS),
        ("/v1/tasks/r%75ns/trun_1/result", ESCAPED),
        ("/v1/t%61sks/runs/trun_1", ESCAPED),
        ("/v1/tasks/runs/trun_1/%72esult", ESCAPED),
        ("/v1/tasks/runs/trun%5F1", ESCAPED),
        ("/v1/tasks/runs/trun%2d1", ESCAPED),
        ("/v1/tasks/runs/a%7eb", ESCAPED),
        ("/v1/tasks/runs/a%39", ESCAPED),
        ("/v1/tasks/runs/...", None),
        ("/v1/tasks/runs/..", DOTS),
        ("..", DOTS),
        (".", DOTS),
        ("/v1/.well-known", None),
        ("/v1/tasks/runs/a.b", None),
        ("/v1/tasks/runs/trun_1", None),
        ("/v1/echo/a%2Fb", SLASH),
        ("/v1/tasks/runs/trun_x%2fresult", SLASH),
        ("/v1/tasks/runs/trun_x%5Cresult", SLASH),
        ("/v1/tasks/runs/trun_x%5cresult", SLASH),
        ("/v1/tasks/runs/trun_x\\result", SLASH),
        ("/v1/tasks/runs/%2e%2e%2F", SLASH),
        ("/v1/echo/c%252F", None),
        ("/v1/echo/%20%3F%23%40%5B", None),
    ],
)
def test_path_problem(path: str, problem: str | None) -> None:
    assert path_problem(path) == problem


@pytest.mark.parametrize(
    ("creates", "body", "ids"),
    [
        (Creates.RUN, b'{"run_id": "trun_1", "status": "queued"}', ["trun_1"]),
        (Creates.GROUP, b'{"taskgroup_id": "tgrp_1"}', ["tgrp_1"]),
        (Creates.GROUP_RUNS, b'{"run_ids": ["trun_1", "trun_2"]}', ["trun_1", "trun_2"]),
        (Creates.RUN, b'{"run_id": null}', []),
        (Creates.RUN, b'{"run_id": 7}', []),
        (Creates.RUN, b"not json", []),
        (Creates.RUN, b"[]", []),
        (Creates.GROUP_RUNS, b'{"run_ids": "trun_1"}', []),
        (Creates.GROUP_RUNS, b'{"run_ids": ["trun_1", 2, ""]}', ["trun_1"]),
    ],
)
def test_created_ids(creates: Creates, body: bytes, ids: list[str]) -> None:
    assert created_ids(creates, body) == ids


RULES = (
    parse_rule("GET /v1/tasks/runs/*/input"),
    parse_rule("post /v1/tasks/runs"),
    parse_rule("* /v1beta/findall/**"),
    parse_rule("GET /v1/tasks/groups/tgrp_*"),
)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/v1/tasks/runs/trun_1/input", True),
        ("GET", "/v1/tasks/runs/a%2Fb/input", True),
        ("GET", "/v1/tasks/runs/trun_1/result", False),
        ("GET", "/v1/tasks/runs/trun_1", False),
        ("POST", "/v1/tasks/runs", True),
        ("GET", "/v1/tasks/runs", False),
        ("POST", "/v1/tasks/runs/x", False),
        ("DELETE", "/v1beta/findall/runs/f_1", True),
        ("GET", "/v1beta/findall", True),  # a final ** matches any rest, none included
        ("GET", "/v1/tasks/groups/tgrp_9", True),
        ("GET", "/v1/tasks/groups/other", False),
        ("POST", "/v1/search", False),
    ],
)
def test_allowlist_rules(method: str, path: str, allowed: bool) -> None:
    assert is_allowed(RULES, method, path) is allowed


def test_no_allowlist_allows_everything() -> None:
    assert is_allowed(None, "DELETE", "/v1/anything")


def test_rules_are_normalised() -> None:
    assert parse_rule("  post   /v1/tasks/runs ").text == "POST /v1/tasks/runs"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("GET", "Rule 'GET' is not 'METHOD /path', e.g. 'GET /v1/tasks/runs/*'."),
        ("GET /a /b", "Rule 'GET /a /b' is not 'METHOD /path', e.g. 'GET /v1/tasks/runs/*'."),
        (
            "FETCH /v1/x",
            "Rule 'FETCH /v1/x' has method 'FETCH'; use one of GET, POST, PUT, PATCH, DELETE, "
            "HEAD, OPTIONS, *.",
        ),
        ("GET v1/x", "Rule 'GET v1/x' has path 'v1/x'; it must start with / and hold no ?."),
        (
            "GET /v1/x?y=1",
            "Rule 'GET /v1/x?y=1' has path '/v1/x?y=1'; it must start with / and hold no ?.",
        ),
        ("GET /v1/**/x", "Rule 'GET /v1/**/x': ** may only be the last segment."),
    ],
)
def test_bad_rules_are_refused(text: str, message: str) -> None:
    with pytest.raises(AllowError) as caught:
        parse_rule(text)
    assert str(caught.value) == message
