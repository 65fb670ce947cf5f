"""Which Parallel route a request is: its class, the ids it names, how long it may run. Pure."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from urllib.parse import unquote


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


@dataclass(frozen=True, slots=True)
class Route:
    name: str  # the route class, as logged: "tasks.runs.create"
    run_id: str | None = None
    group_id: str | None = None
    timing: Timing = Timing.ORDINARY
    creates: Creates | None = None


SEGMENT = r"([^/]+)"
INPUT_ROUTE = "tasks.runs.input"  # the cached route
_TABLE: list[tuple[str, re.Pattern[str], str, Timing, Creates | None]] = [
    (method, re.compile(pattern), name, timing, creates)
    for method, pattern, name, timing, creates in [
        ("POST", r"/v1/tasks/runs", "tasks.runs.create", Timing.ORDINARY, Creates.RUN),
        ("GET", rf"/v1/tasks/runs/{SEGMENT}", "tasks.runs.retrieve", Timing.ORDINARY, None),
        ("GET", rf"/v1/tasks/runs/{SEGMENT}/input", INPUT_ROUTE, Timing.ORDINARY, None),
        ("GET", rf"/v1/tasks/runs/{SEGMENT}/result", "tasks.runs.result", Timing.LONG_POLL, None),
        ("GET", rf"/v1/tasks/runs/{SEGMENT}/events", "tasks.runs.events", Timing.STREAM, None),
        ("POST", r"/v1/tasks/groups", "tasks.groups.create", Timing.ORDINARY, Creates.GROUP),
        ("GET", rf"/v1/tasks/groups/{SEGMENT}", "tasks.groups.retrieve", Timing.ORDINARY, None),
        (
            "POST",
            rf"/v1/tasks/groups/{SEGMENT}/runs",
            "tasks.groups.add_runs",
            Timing.ORDINARY,
            Creates.GROUP_RUNS,
        ),
        ("GET", rf"/v1/tasks/groups/{SEGMENT}/runs", "tasks.groups.runs", Timing.STREAM, None),
        ("GET", rf"/v1/tasks/groups/{SEGMENT}/events", "tasks.groups.events", Timing.STREAM, None),
        (
            "GET",
            rf"/v1/tasks/groups/{SEGMENT}/runs/{SEGMENT}",
            "tasks.groups.run",
            Timing.ORDINARY,
            None,
        ),
        ("POST", r"/v1/search", "search", Timing.ORDINARY, None),
        ("POST", r"/v1/extract", "extract", Timing.ORDINARY, None),
        ("GET", r"/v1beta/findall/.+/events", "findall.events", Timing.STREAM, None),
    ]
]
# Families without a row above still go upstream, under a coarse class.
_FAMILIES = [
    ("/v1/monitors", "monitors"),
    ("/v1beta/findall", "findall"),
    ("/v1beta/memory", "memory"),
    ("/v1beta/", "v1beta"),
    ("/v1/", "v1"),
]


UNRESERVED_ESCAPE = re.compile(r"%(?:[46][1-9A-F]|[57][0-9A]|3[0-9]|2[DE]|5F|7E)", re.IGNORECASE)


def path_problem(raw_path: str) -> str | None:
    """Why a path must not be forwarded, or None.

    Upstream, or a proxy before it, may normalise a path (RFC 3986 5.2.4 and 6.2.2.2), so a
    path that looks like one route to the gateway could reach another one, past the allowlist
    and the isolation check: dot segments, and percent-encoded letters, digits and `-._~`
    (which no client needs to encode), are refused rather than sent.
    """
    if any(unquote(segment) in (".", "..") for segment in raw_path.split("/")):
        return "the path may not hold . or .. segments"
    if UNRESERVED_ESCAPE.search(raw_path):
        return "the path may not percent-encode letters, digits or -._~"
    return None


def classify(method: str, raw_path: str, accept: str = "") -> Route | None:
    """The route for a request, or None when the path is outside /v1/ and /v1beta/."""
    for row_method, pattern, name, timing, creates in _TABLE:
        if method != row_method:
            continue
        m = pattern.fullmatch(raw_path)
        if m is None:
            continue
        ids = m.groups()
        if name.startswith("tasks.runs.") and ids:
            return Route(name, run_id=ids[0], timing=timing, creates=creates)
        if name.startswith("tasks.groups.") and ids:
            run_id = ids[1] if len(ids) > 1 else None
            return Route(name, run_id=run_id, group_id=ids[0], timing=timing, creates=creates)
        return Route(name, timing=timing, creates=creates)
    for prefix, family in _FAMILIES:
        if raw_path.startswith(prefix):
            # An app that asks for a stream gets stream timeouts on any route.
            timing = Timing.STREAM if "text/event-stream" in accept else Timing.ORDINARY
            return Route(f"{family}.{method.lower()}", timing=timing)
    return None
