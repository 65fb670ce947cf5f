"""The routes whose final answers are cached: a run's result, a finished run's object, and a
finished run's event stream.

Called once every check a forwarded call gets has passed (key, allowlist, rate limit, and
under isolation mode "app" the run's ownership), so a stored answer reaches only an app that
upstream would have answered too.
"""

from __future__ import annotations

import functools

from aiohttp import web

from ..billing.calls import RUN_EVENTS, RUN_OBJECT, RUN_RESULT
from ..cache.final_answers import Question
from ..cache.final_policy import CONTENT_TYPES, beta_set, cacheable_query
from ..cache.policy import CACHE_HIT, cache_status, is_valid_run_id
from ..errors import GatewayError
from ..state import APP_NAME, FINALS, TALLY
from ..storage.types import AnswerKind
from .catalog import EVENTS_ROUTE, RESULT_ROUTE, RETRIEVE_ROUTE, Route
from .forward import Keep, forward

ANSWER_KINDS = {
    RESULT_ROUTE: AnswerKind.RESULT,
    RETRIEVE_ROUTE: AnswerKind.RUN,
    EVENTS_ROUTE: AnswerKind.EVENTS,
}
SAVED_KINDS = {
    AnswerKind.RESULT: RUN_RESULT,
    AnswerKind.RUN: RUN_OBJECT,
    AnswerKind.EVENTS: RUN_EVENTS,
}
HIT_HEADERS = {"Cache-Status": CACHE_HIT}


def answer_kind(route: Route) -> AnswerKind | None:
    """The kind of final answer a route may be answered with, None for any other route."""
    if route.run_id is None or not is_valid_run_id(route.run_id):
        return None
    return ANSWER_KINDS.get(route.name)


async def answer_or_forward(
    request: web.Request, route: Route, kind: AnswerKind
) -> web.StreamResponse:
    """The stored answer, else upstream's (stored on its way back if it is final)."""
    if not cacheable_query(kind, request.query_string):
        return await forward(request, route)  # a parameter the key does not hold: as sent
    assert route.run_id is not None
    # The run object's key holds the beta set as the result's does: parallel-beta changes what
    # a create does and what its run carries (a beta's fields appear on the run, as they do on
    # the result), so an answer asked for under one set is never served under another. It costs
    # one more upstream call per set, where a shared key could hand an app a shape it did not
    # ask for.
    question = Question(kind, route.run_id, beta_set(request.headers.getall("parallel-beta", ())))
    finals = request.app[FINALS]
    body = await finals.get(question)
    if body is not None:
        request.app[TALLY].count_saved(request[APP_NAME], SAVED_KINDS[kind])
        return _hit(body, CONTENT_TYPES[kind])
    limit = finals.max_body_bytes
    # A stream is copied only when its run is known to have finished (another of its final
    # answers is stored): upstream then replays the whole sequence and closes, so the copy lives
    # for a moment and holds at most cache.max_body_bytes. A live stream (a run not known
    # finished) is never copied: thousands are held open for minutes each, at about 20 kB
    # apiece (issue 12), and a copy of each would grow with it. Its next call, once the app has
    # the run's result or final state, is stored.
    tee = kind is AnswerKind.EVENTS and await finals.known_finished(route.run_id)
    keep = Keep(limit, functools.partial(finals.keep, question), stream_limit=limit if tee else 0)
    try:
        return await forward(request, route, keep)
    except GatewayError as e:
        # Upstream could not answer a run it last saw unfinished: it may have finished since,
        # and another replica stored it.
        body = await finals.stored(question) if finals.seen_unfinished(question) else None
        if body is not None:
            return _hit(body, CONTENT_TYPES[kind])
        # A miss the gateway could not get an answer for (offline, upstream down): RFC 9211 2.8.
        status = cache_status(stored=False, detail=e.reason)
        raise e.with_headers({"Cache-Status": status}) from None


def _hit(body: bytes, content_type: str) -> web.Response:
    return web.Response(body=body, content_type=content_type, headers=HIT_HEADERS)
