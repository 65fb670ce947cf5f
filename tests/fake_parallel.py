"""A fake of the wider Parallel API: task runs and groups, search, extract, FindAll, SSE."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from tests.fake_upstream import FakeUpstream, Recorded, error_json

Json = dict[str, object]
FINDALL_BETA = "findall-2025-09-15"
ACTIVE = frozenset({"queued", "running", "cancelling", "action_required"})


@dataclass(frozen=True)
class Exchange(Recorded):
    """A request as it arrived: header names lower-cased, the body as raw bytes."""

    body: bytes

    def json(self) -> object:
        return orjson.loads(self.body)


@dataclass(frozen=True)
class Call:
    """What a route handler gets: the request, the raw path's captured ids, the body."""

    request: web.Request
    ids: tuple[str, ...]
    body: bytes


@dataclass
class Run:
    run_id: str
    input: Json
    taskgroup_id: str | None = None
    status: str = "queued"
    created_at: str = field(default_factory=lambda: now())
    modified_at: str = field(default_factory=lambda: now())

    def view(self, status: str | None = None) -> Json:
        """The TaskRun object (types/task_run.py)."""
        status = status or self.status
        return {
            "run_id": self.run_id,
            "interaction_id": self.run_id,
            "status": status,
            "is_active": status in ACTIVE,
            "processor": self.input["processor"],
            "metadata": self.input.get("metadata"),
            "taskgroup_id": self.taskgroup_id,
            "created_at": self.created_at,
            "modified_at": self.modified_at,
            "error": None,
            "warnings": None,
        }

    def output(self) -> Json:
        """A TaskRunTextOutput (types/task_run_text_output.py)."""
        citation = {"url": "https://example.com/source", "title": "Source", "excerpts": ["42"]}
        basis = {"field": "output", "reasoning": "Fake reasoning.", "citations": [citation]}
        return {"type": "text", "content": f"Answer for {self.run_id}", "basis": [basis]}

    def state_event(self, status: str | None = None, **extra: object) -> Json:
        """A task_run.state event (types/task_run_event.py)."""
        event: Json = {"type": "task_run.state", "event_id": None, "input": None}
        event |= {"run": self.view(status), "output": None, **extra}
        return event


@dataclass
class Group:
    taskgroup_id: str
    metadata: object
    run_ids: list[str] = field(default_factory=list)
    created_at: str = field(default_factory=lambda: now())


@dataclass
class FindAll:
    findall_id: str
    spec: Json
    status: str = "queued"
    created_at: str = field(default_factory=lambda: now())

    def view(self, status: str | None = None) -> Json:
        """The FindAllRun object (types/beta/findall_run.py)."""
        status = status or self.status
        done = status == "completed"
        metrics = {"generated_candidates_count": 2 if done else 0}
        metrics["matched_candidates_count"] = 1 if done else 0
        return {
            "findall_id": self.findall_id,
            "generator": self.spec["generator"],
            "status": {
                "status": status,
                "is_active": status in ACTIVE,
                "metrics": metrics,
                "termination_reason": "candidates_exhausted" if done else None,
            },
            "metadata": self.spec.get("metadata"),
            "created_at": self.created_at,
            "modified_at": self.created_at,
        }

    def candidates(self) -> list[Json]:
        """One match and one miss (types/beta/findall_candidate.py)."""
        return [
            {
                "candidate_id": f"cand_{self.findall_id[-8:]}_{n}",
                "name": name,
                "url": f"https://example.com/{name.lower()}",
                "description": f"{name}, a candidate",
                "match_status": status,
                "output": {"matched": status == "matched"},
                "basis": [],
            }
            for n, (name, status) in enumerate((("Acme", "matched"), ("Globex", "unmatched")))
        ]


Route = Callable[[Call], Awaitable[web.StreamResponse]]


class FakeParallel(FakeUpstream):
    """The Parallel API in memory; runs complete as soon as they are created."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: dict[str, Run] = {}
        self.groups: dict[str, Group] = {}
        self.findalls: dict[str, FindAll] = {}
        self.exchanges: list[Exchange] = []  # every request, the input route's too
        self.runs_complete = True  # False: runs stay "running" and /result answers 408
        self.event_gap = 0.0  # seconds between two SSE events
        self.hold_stream: asyncio.Event | None = None  # streams wait for it after event one
        self.hold_result: asyncio.Event | None = None  # /result long polls wait for it
        self.hold_retrieve: asyncio.Event | None = None  # GET /v1/tasks/runs/{id} waits for it
        self.streams_finished = 0
        self.streams_cancelled = 0
        self._routes: list[tuple[str, re.Pattern[str], Route]] = [
            (method, re.compile(pattern.replace("{}", "([^/]+)")), route)
            for method, pattern, route in (
                ("POST", "/v1/tasks/runs", self._create_run),
                ("GET", "/v1/tasks/runs/{}", self._get_run),
                ("GET", "/v1/tasks/runs/{}/result", self._run_result),
                ("GET", "/v1/tasks/runs/{}/events", self._run_events),
                ("POST", "/v1/tasks/groups", self._create_group),
                ("GET", "/v1/tasks/groups/{}", self._get_group),
                ("POST", "/v1/tasks/groups/{}/runs", self._add_runs),
                ("GET", "/v1/tasks/groups/{}/runs", self._group_runs),
                ("GET", "/v1/tasks/groups/{}/events", self._group_events),
                ("GET", "/v1/tasks/groups/{}/runs/{}", self._group_run),
                ("POST", "/v1/search", self._search),
                ("POST", "/v1/extract", self._extract),
                ("POST", "/v1beta/findall/runs", self._create_findall),
                ("GET", "/v1beta/findall/runs/{}", self._get_findall),
                ("GET", "/v1beta/findall/runs/{}/events", self._findall_events),
                ("GET", "/v1beta/findall/runs/{}/result", self._findall_result),
                ("GET", "/v1/echo(?:/.*)?", self._echo),
            )
        ]
        self.app.middlewares.append(self._dispatch)

    def last(self, method: str, raw_path: str) -> Exchange:
        """The latest request with this method whose raw path (query included) starts so."""
        for exchange in reversed(self.exchanges):
            if exchange.method == method and exchange.raw_path.startswith(raw_path):
                return exchange
        raise LookupError(f"no {method} request to {raw_path!r} among {len(self.exchanges)}")

    @web.middleware
    async def _dispatch(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Route on the raw path; the input route and unknown paths go to FakeUpstream.handle."""
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.exchanges.append(Exchange(request.method, request.raw_path, headers, body))
        found = self._resolve(request.method, request.raw_path.partition("?")[0])
        if found is None:
            return await handler(request)
        route, ids = found
        intercepted = await self.intercept(request)
        if intercepted is not None:
            return intercepted
        return await route(Call(request, ids, body))

    def _resolve(self, method: str, raw_path: str) -> tuple[Route, tuple[str, ...]] | None:
        for route_method, pattern, route in self._routes:
            match = pattern.fullmatch(raw_path)
            if match and route_method == method:
                return route, match.groups()
        return None

    def _not_found(self, message: str) -> web.Response:
        self.last_error = error_json(message)
        return _json(404, self.last_error)

    def _new_run(self, run_input: Json, taskgroup_id: str | None = None, raw: bytes = b"") -> Run:
        """A queued run whose input route answers `raw` (the body as sent) or `run_input`."""
        run = Run(f"trun_{uuid.uuid4().hex}", run_input, taskgroup_id)
        self.runs[run.run_id] = run
        self.add(run.run_id, raw or run_input)
        return run

    def _settle(self, run: Run) -> None:
        """Runs move on right after the answer that created them."""
        run.status = "completed" if self.runs_complete else "running"
        run.modified_at = now()

    async def _create_run(self, call: Call) -> web.StreamResponse:
        body = _object(call.body)
        if body is None or not _is_run_input(body):
            return _invalid("input and processor are required")
        run = self._new_run(body, raw=call.body)
        reply = _json(202, run.view())
        self._settle(run)
        return reply

    async def _get_run(self, call: Call) -> web.StreamResponse:
        if self.hold_retrieve is not None:
            await self.hold_retrieve.wait()
        run = self.runs.get(call.ids[0])
        return _json(200, run.view()) if run else self._not_found("Run id not found")

    async def _run_result(self, call: Call) -> web.StreamResponse:
        if not call.request.query.get("timeout", "0").isdigit():
            return _invalid("timeout must be an integer")
        if self.hold_result is not None:
            await self.hold_result.wait()
        run = self.runs.get(call.ids[0])
        if run is None:
            return self._not_found("Run id not found")
        if run.status in ACTIVE:
            return _error(408, "Run is still active")
        return _json(200, {"run": run.view(), "output": run.output()})

    async def _run_events(self, call: Call) -> web.StreamResponse:
        run = self.runs.get(call.ids[0])
        if run is None:
            return self._not_found("Run id not found")
        done = run.status == "completed"
        events: list[Json] = [
            run.state_event("running"),
            {
                "type": "task_run.progress_msg.exec_status",
                "message": "Starting research",
                "timestamp": now(),
            },
            {
                "type": "task_run.progress_stats",
                "progress_meter": 50.0,
                "source_stats": {"num_sources_considered": 4, "num_sources_read": 2},
            },
            run.state_event(output=run.output() if done else None),
        ]
        return await self._stream(call.request, events)

    async def _create_group(self, call: Call) -> web.StreamResponse:
        body = _object(call.body)
        if body is None:
            return _invalid("the body must be a JSON object")
        group = Group(f"tgrp_{uuid.uuid4().hex}", body.get("metadata"))
        self.groups[group.taskgroup_id] = group
        return _json(200, self._group_view(group))

    async def _get_group(self, call: Call) -> web.StreamResponse:
        group = self.groups.get(call.ids[0])
        return _json(200, self._group_view(group)) if group else self._not_found("Group not found")

    async def _add_runs(self, call: Call) -> web.StreamResponse:
        group = self.groups.get(call.ids[0])
        if group is None:
            return self._not_found("Group not found")
        body = _object(call.body)
        inputs = body.get("inputs") if body else None
        if not isinstance(inputs, list) or not all(_is_run_input(i) for i in inputs):
            return _invalid("inputs must be a list of run inputs")
        assert body is not None
        spec = body.get("default_task_spec")
        cursor = f"cursor_{len(group.run_ids)}" if group.run_ids else None
        gid = group.taskgroup_id
        runs = [self._new_run({"task_spec": spec, **i} if spec else i, gid) for i in inputs]
        group.run_ids += [run.run_id for run in runs]
        reply: Json = {"run_ids": [run.run_id for run in runs], "event_cursor": cursor}
        reply |= {"run_cursor": cursor, "status": self._group_status(group)}
        for run in runs:
            self._settle(run)
        return _json(200, reply)

    async def _group_runs(self, call: Call) -> web.StreamResponse:
        group = self.groups.get(call.ids[0])
        if group is None:
            return self._not_found("Group not found")
        query = call.request.query
        events = [
            self.runs[rid].state_event(
                event_id=f"cursor_{n}",
                input=self.runs[rid].input if query.get("include_input") == "true" else None,
                output=self.runs[rid].output() if query.get("include_output") == "true" else None,
            )
            for n, rid in enumerate(group.run_ids, 1)
            if query.get("status") in (None, self.runs[rid].status)
        ]
        return await self._stream(call.request, _after(events, query.get("last_event_id")))

    async def _group_events(self, call: Call) -> web.StreamResponse:
        group = self.groups.get(call.ids[0])
        if group is None:
            return self._not_found("Group not found")
        status: Json = {"type": "task_group_status", "status": self._group_status(group)}
        runs = [
            self.runs[rid].state_event(event_id=f"cursor_{n}")
            for n, rid in enumerate(group.run_ids, 1)
        ]
        events: list[Json] = [{**status, "event_id": "cursor_0"}, *runs]
        events.append({**status, "event_id": f"cursor_{len(runs) + 1}"})
        last_event_id = call.request.query.get("last_event_id")
        return await self._stream(call.request, _after(events, last_event_id))

    async def _group_run(self, call: Call) -> web.StreamResponse:
        group = self.groups.get(call.ids[0])
        if group is None or call.ids[1] not in group.run_ids:
            return self._not_found("Run id not found")
        return _json(200, self.runs[call.ids[1]].view())

    def _group_view(self, group: Group) -> Json:
        """The TaskGroup object (types/task_group.py)."""
        return {
            "taskgroup_id": group.taskgroup_id,
            "metadata": group.metadata,
            "created_at": group.created_at,
            "status": self._group_status(group),
        }

    def _group_status(self, group: Group) -> Json:
        """The TaskGroupStatus object (types/task_group_status.py)."""
        runs = [self.runs[rid] for rid in group.run_ids]
        return {
            "num_task_runs": len(runs),
            "task_run_status_counts": dict(Counter(run.status for run in runs)),
            "is_active": any(run.status in ACTIVE for run in runs),
            "status_message": None,
            "modified_at": max((run.modified_at for run in runs), default=group.created_at),
        }

    async def _search(self, call: Call) -> web.StreamResponse:
        body = _object(call.body)
        queries = body.get("search_queries") if body else None
        if not isinstance(queries, list) or not queries:
            return _invalid("search_queries must be a non-empty list")
        assert body is not None
        results = [
            {
                "url": f"https://example.com/search/{n}",
                "title": f"About {query}",
                "excerpts": [f"An excerpt about {query}."],
                "publish_date": "2024-01-01",
            }
            for n, query in enumerate(queries)
        ]
        reply = {"search_id": f"search_{uuid.uuid4().hex}", "results": results}
        return _json(200, reply | _session(body))

    async def _extract(self, call: Call) -> web.StreamResponse:
        body = _object(call.body)
        urls = body.get("urls") if body else None
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            return _invalid("urls must be a list of strings")
        assert body is not None
        results: list[Json] = []
        errors: list[Json] = []
        for url in urls:
            if "invalid" in url:  # a way to get an error entry
                errors.append({"url": url, "error_type": "fetch_error", "http_status_code": 404})
            else:
                results.append({"url": url, "title": f"Page {url}", "excerpts": [f"From {url}."]})
        reply = {"extract_id": f"extract_{uuid.uuid4().hex}", "results": results, "errors": errors}
        return _json(200, reply | _session(body))

    async def _create_findall(self, call: Call) -> web.StreamResponse:
        if (refused := _findall_beta(call.request)) is not None:
            return refused
        body = _object(call.body)
        required = ("entity_type", "generator", "match_conditions", "match_limit", "objective")
        if body is None or any(name not in body for name in required):
            return _invalid(f"{', '.join(required)} are required")
        run = FindAll(f"findall_{uuid.uuid4().hex}", body)
        self.findalls[run.findall_id] = run
        reply = _json(200, run.view())
        run.status = "completed" if self.runs_complete else "running"
        return reply

    def _findall(self, call: Call) -> FindAll | web.Response:
        if (refused := _findall_beta(call.request)) is not None:
            return refused
        run = self.findalls.get(call.ids[0])
        return run if run is not None else self._not_found("FindAll run not found")

    async def _get_findall(self, call: Call) -> web.StreamResponse:
        run = self._findall(call)
        return run if isinstance(run, web.Response) else _json(200, run.view())

    async def _findall_result(self, call: Call) -> web.StreamResponse:
        run = self._findall(call)
        if isinstance(run, web.Response):
            return run
        reply = {"run": run.view(), "candidates": run.candidates(), "last_event_id": "event_3"}
        return _json(200, reply)

    async def _findall_events(self, call: Call) -> web.StreamResponse:
        run = self._findall(call)
        if isinstance(run, web.Response):
            return run
        matched = run.candidates()[0]
        generated = {**matched, "match_status": "generated"}
        events: list[Json] = [
            {"type": "findall.status", "data": run.view("running")},
            {"type": "findall.candidate.generated", "data": generated},
            {"type": "findall.candidate.matched", "data": matched},
            {"type": "findall.status", "data": run.view()},
        ]
        for n, event in enumerate(events):
            event |= {"event_id": f"event_{n}", "timestamp": now()}
        return await self._stream(call.request, events)

    async def _echo(self, call: Call) -> web.StreamResponse:
        return _json(200, {"raw_path": call.request.raw_path})

    async def _stream(self, request: web.Request, events: Iterable[Json]) -> web.StreamResponse:
        """Write Server-Sent Events one at a time: `event: <type>` and one `data:` line each."""
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        try:
            for n, event in enumerate(events):
                if n == 1 and self.hold_stream is not None:
                    await _unless_gone(request, self.hold_stream.wait())
                if n and self.event_gap:
                    await _unless_gone(request, asyncio.sleep(self.event_gap))
                name = str(event["type"]).encode()
                await resp.write(b"event: %s\ndata: %s\n\n" % (name, orjson.dumps(event)))
            await resp.write_eof()
        except ConnectionResetError:
            self.streams_cancelled += 1
            return resp
        except asyncio.CancelledError:  # the server cancels handlers whose client went away
            self.streams_cancelled += 1
            raise
        self.streams_finished += 1
        return resp


async def _unless_gone(request: web.Request, waiting: Awaitable[object]) -> None:
    """Wait, but raise ConnectionResetError as soon as the client disconnects."""
    task = asyncio.ensure_future(waiting)
    try:
        while not task.done():
            if request.transport is None or request.transport.is_closing():
                raise ConnectionResetError("the client went away")
            await asyncio.wait({task}, timeout=0.01)
    finally:
        task.cancel()


def now() -> str:
    """RFC 3339 in UTC, as the API writes it: 2025-08-06T00:52:58.619503Z."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _after(events: list[Json], last_event_id: str | None) -> list[Json]:
    """Resume after `last_event_id`, as `?last_event_id=` asks."""
    ids = [event.get("event_id") for event in events]
    return events[ids.index(last_event_id) + 1 :] if last_event_id in ids else events


def _session(body: Json) -> Json:
    return {
        "session_id": body.get("session_id") or f"session_{uuid.uuid4().hex}",
        "usage": [{"name": "requests", "count": 1}],
        "warnings": None,
    }


def _findall_beta(request: web.Request) -> web.Response | None:
    betas = [b.strip() for b in request.headers.get("parallel-beta", "").split(",")]
    return None if FINDALL_BETA in betas else _error(400, f"parallel-beta must name {FINDALL_BETA}")


def _object(body: bytes) -> Json | None:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _is_run_input(value: object) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("processor"), str)
        and isinstance(value.get("input"), str | dict)
    )


def _json(status: int, body: object) -> web.Response:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return web.Response(status=status, body=raw, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json(status, error_json(message))


def _invalid(reason: str) -> web.Response:
    body = orjson.loads(error_json("Request validation error"))
    body["error"]["detail"] = {"reason": reason}
    return _json(422, body)
