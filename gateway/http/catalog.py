"""Which Parallel route a request is: its class, the ids it names, how long it may run. Pure."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from urllib.parse import unquote

from ..errors import InvalidPathError, MethodNotAllowedError, NotFoundError


class Timing(enum.Enum):
    """How long an upstream call may take (config: upstream.timeout, long_poll_timeout,
    stream_idle_timeout)."""

    ORDINARY = "ordinary"
    LONG_POLL = "long-poll"
    STREAM = "stream"


class Creates(enum.Enum):
    """What a successful call creates, to record its owner."""

    RUN = "run"
    GROUP = "group"
    GROUP_RUNS = "group-runs"
    FINDALL = "findall"
    MONITOR = "monitor"


@dataclass(frozen=True, slots=True)
class Route:
    name: str  # the route class, as logged: "tasks.runs.create"
    run_id: str | None = None
    owned: tuple[str, ...] = ()  # every id the path names: runs, groups, FindAll runs, monitors
    timing: Timing = Timing.ORDINARY
    creates: Creates | None = None
    # A row of the catalog below, spelled exactly; False for a route only its family knows.
    catalogued: bool = True


# The only methods Parallel's API uses (parallel-web 1.3.7): no other is forwarded.
FORWARDED_METHODS = ("GET", "POST")
INPUT_ROUTE = "tasks.runs.input"  # the cached route
# Answered from a recording under a replay mode (gateway/http/replay_route.py).
CREATE_ROUTE = "tasks.runs.create"
# Cached once final (gateway/http/final_route.py).
RETRIEVE_ROUTE = "tasks.runs.retrieve"
RESULT_ROUTE = "tasks.runs.result"
EVENTS_ROUTE = "tasks.runs.events"
# Every route of the API, from the official SDK. `{name}` is one non-empty path segment.
_ORD, _POLL, _STREAM = Timing.ORDINARY, Timing.LONG_POLL, Timing.STREAM
_ROWS: list[tuple[str, str, str, Timing, Creates | None]] = [
    ("POST", "/v1/tasks/runs", CREATE_ROUTE, _ORD, Creates.RUN),
    ("GET", "/v1/tasks/runs/{run}", RETRIEVE_ROUTE, _ORD, None),
    ("GET", "/v1/tasks/runs/{run}/input", INPUT_ROUTE, _ORD, None),
    ("GET", "/v1/tasks/runs/{run}/result", RESULT_ROUTE, _POLL, None),
    ("GET", "/v1/tasks/runs/{run}/events", EVENTS_ROUTE, _STREAM, None),
    ("POST", "/v1/tasks/groups", "tasks.groups.create", _ORD, Creates.GROUP),
    ("GET", "/v1/tasks/groups/{group}", "tasks.groups.retrieve", _ORD, None),
    ("POST", "/v1/tasks/groups/{group}/runs", "tasks.groups.add_runs", _ORD, Creates.GROUP_RUNS),
    ("GET", "/v1/tasks/groups/{group}/runs", "tasks.groups.runs", _STREAM, None),
    ("GET", "/v1/tasks/groups/{group}/events", "tasks.groups.events", _STREAM, None),
    ("GET", "/v1/tasks/groups/{group}/runs/{run}", "tasks.groups.run", _ORD, None),
    ("POST", "/v1/search", "search", _ORD, None),
    ("POST", "/v1/extract", "extract", _ORD, None),
    ("POST", "/v1/monitors", "monitors.create", _ORD, Creates.MONITOR),
    ("GET", "/v1/monitors", "monitors.list", _ORD, None),
    ("GET", "/v1/monitors/{monitor}", "monitors.retrieve", _ORD, None),
    ("GET", "/v1/monitors/{monitor}/events", "monitors.events", _ORD, None),
    ("POST", "/v1/monitors/{monitor}/cancel", "monitors.cancel", _ORD, None),
    ("POST", "/v1/monitors/{monitor}/trigger", "monitors.trigger", _ORD, None),
    ("POST", "/v1/monitors/{monitor}/update", "monitors.update", _ORD, None),
    ("POST", "/v1beta/findall/runs", "findall.create", _ORD, Creates.FINDALL),
    ("POST", "/v1beta/findall/ingest", "findall.ingest", _ORD, None),
    ("POST", "/v1beta/findall/entity-search", "findall.entity_search", _ORD, None),
    ("GET", "/v1beta/findall/runs/{findall}", "findall.retrieve", _ORD, None),
    ("GET", "/v1beta/findall/runs/{findall}/events", "findall.events", _STREAM, None),
    ("GET", "/v1beta/findall/runs/{findall}/result", "findall.result", _ORD, None),
    ("GET", "/v1beta/findall/runs/{findall}/schema", "findall.schema", _ORD, None),
    ("POST", "/v1beta/findall/runs/{findall}/cancel", "findall.cancel", _ORD, None),
    ("POST", "/v1beta/findall/runs/{findall}/enrich", "findall.enrich", _ORD, None),
    ("POST", "/v1beta/findall/runs/{findall}/extend", "findall.extend", _ORD, None),
    ("POST", "/v1beta/memory/retrieve", "memory.retrieve", _ORD, None),
    ("POST", "/v1beta/memory/evict", "memory.evict", _ORD, None),
    ("POST", "/v1beta/memory/clear", "memory.clear", _ORD, None),
]
_TABLE = [
    (method, re.compile(re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)), name, timing, creates)
    for method, template, name, timing, creates in _ROWS
]
# Paths of the API without a row above still go upstream (in team mode, for a key with no
# allowlist), under a coarse class: new Parallel endpoints work before the catalog knows them.
_FAMILIES = [
    ("/v1/monitors", "monitors"),
    ("/v1beta/findall", "findall"),
    ("/v1beta/memory", "memory"),
    ("/v1beta/", "v1beta"),
    ("/v1/", "v1"),
]

UNRESERVED_ESCAPE = re.compile(r"%(?:[46][1-9A-F]|[57][0-9A]|3[0-9]|2[DE]|5F|7E)", re.IGNORECASE)
# No id holds a slash or a backslash; an upstream that decodes %2F, or reads \ as /, would
# route the rest of the segment as more path (past the allowlist's `*` and the isolation check).
SEPARATOR = re.compile(r"%2F|%5C|\\", re.IGNORECASE)


def path_problem(raw_path: str) -> str | None:
    """Why a path must not be forwarded, or None.

    Upstream, or a proxy before it, may normalise a path (RFC 3986 5.2.4 and 6.2.2.2), so a
    path that looks like one route to the gateway could reach another one, past the allowlist
    and the isolation check: dot segments, encoded or back slashes, and percent-encoded
    letters, digits and `-._~` (which no client needs to encode) are refused rather than sent.
    """
    if (
        raw_path[:1] == "/"
        and "%" not in raw_path
        and "\\" not in raw_path
        and "/." not in raw_path
    ):
        return None  # the usual path: nothing encoded, no backslash, no segment starting "."
    if SEPARATOR.search(raw_path):
        return "the path may not hold a backslash or an encoded / or \\ (%2F, %5C)"
    if any(unquote(segment) in (".", "..") for segment in raw_path.split("/")):
        return "the path may not hold . or .. segments"
    if UNRESERVED_ESCAPE.search(raw_path):
        return "the path may not percent-encode letters, digits or -._~"
    return None


def classify(method: str, raw_path: str, accept: str = "") -> Route | None:
    """The route for a request, or None when the path is outside /v1/ and /v1beta/.

    Only a catalogued method and path, spelled exactly (case, no empty segment, no trailing
    slash), is `catalogued`; anything else under the API's prefixes gets its family's class.
    """
    for row_method, pattern, name, timing, creates in _TABLE:
        m = pattern.fullmatch(raw_path) if method == row_method else None
        if m is not None:
            ids = m.groupdict()
            return Route(name, ids.get("run"), tuple(ids.values()), timing, creates)
    for prefix, family in _FAMILIES:
        if raw_path.startswith(prefix):
            # An app that asks for a stream gets stream timings on any route.
            timing = Timing.STREAM if "text/event-stream" in accept else Timing.ORDINARY
            return Route(f"{family}.{method.lower()}", timing=timing, catalogued=False)
    return None


def known_route(method: str, raw_path: str) -> str | None:
    """The class of a catalogued route spelled exactly, for the log line of a call refused
    before it was resolved (a dead key, an allowlist); None for any other path."""
    route = classify(method, raw_path)
    if route is None or not route.catalogued or path_problem(raw_path) is not None:
        return None
    return route.name


def refuse_bad_path(raw_path: str) -> None:
    """Raise InvalidPathError (400) for a path that must not be forwarded."""
    problem = path_problem(raw_path)
    if problem is not None:
        raise InvalidPathError(f"Request validation error: {problem}.")


def resolve(method: str, raw_path: str, accept: str, *, strict: bool) -> Route:
    """The route to forward a request on, or the refusal: 400 for a path that must not be
    forwarded, 405 for a method the API does not use, 404 outside the API. When `strict`
    (isolation mode "app", or a key with an allowlist), 404 too for any route not catalogued:
    one the gateway cannot name could be one it must check, so it fails closed."""
    refuse_bad_path(raw_path)
    if method not in FORWARDED_METHODS:
        raise MethodNotAllowedError(
            f"Method {method[:20]} is not used by Parallel's API, so the gateway does not "
            f"forward it; use {' or '.join(FORWARDED_METHODS)}.",
            headers={"Allow": ", ".join(FORWARDED_METHODS)},
        )
    route = classify(method, raw_path, accept)
    if route is None:
        raise NotFoundError(f"No such route on this gateway: {method} {raw_path[:200]}")
    if strict and not route.catalogued:
        raise NotFoundError(
            f"No such route on this gateway: {method} {raw_path[:200]}. Under isolation mode "
            "'app', and for a key with an allowlist, only the routes of Parallel's API are "
            "forwarded, spelled exactly (case, no empty segment, no trailing slash)."
        )
    return route
