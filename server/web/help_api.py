"""HTTP side of the help centre: search, and counting deflections in the database.

`GET /api/help/search?q=…[&limit=n]` answers `{"articles": [...]}` best first
(PROTOCOL.md, HTTP); it needs no token, like a public help page. `POST
/api/help/deflections` with `{"article": id, "query": "..."}` and a Bearer token
records that a suggested article answered the customer's question before a ticket
was opened (seed 001's "virtual assistant"), one row in `help_deflections` per
event (`server.store.deflections`). Deflections are charged to a fair-use limit
before the body is read (a shop's, `POMOC_RATE_SHOP_DEFLECTIONS`; an agent's own of
the same size): past it, 429 with `Retry-After`, and nothing is recorded.

The index itself (`server.rules.helpsearch.HelpIndex`) is built once at startup and passed
in; the store reaches the database through the engine given to it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from server.clock import Clock
from server.errors import BadRequest, NotFound, PomocError
from server.realtime.ratelimit import RateLimiter
from server.rules.helpsearch import MAX_QUERY_CHARS, HelpIndex
from server.rules.limits import Limit
from server.rules.text import text_problem
from server.store.deflections import DeflectionStore
from server.web.http_api import bearer_principal, charge, error_response

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 5
MAX_LIMIT = 20
_MAX_DEFLECTION_BODY = 4096


def routes(*, index: HelpIndex, deflections_of: Callable[[Request], DeflectionStore], secret: str,
           clock: Clock, limiter_of: Callable[[Request], RateLimiter] | None = None,
           deflection_rate: Limit | None = None) -> list[BaseRoute]:
    async def search(request: Request) -> Response:
        try:
            q = request.query_params.get("q", "")
            if not q.strip():
                raise BadRequest("the query parameter q is required")
            if len(q) > MAX_QUERY_CHARS:
                raise BadRequest(f"q is limited to {MAX_QUERY_CHARS} characters")
            raw_limit = request.query_params.get("limit", str(DEFAULT_LIMIT))
            if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
                raise BadRequest(f"limit must be a whole number from 1 to {MAX_LIMIT}")
            articles = index.search(q, int(raw_limit))
        except PomocError as err:
            return error_response(err)
        # The articles change only with a deploy; a short private cache spares
        # repeated keystroke searches.
        return JSONResponse({"articles": articles}, headers={"Cache-Control": "private, max-age=60"})

    async def deflection(request: Request) -> Response:
        try:
            principal = bearer_principal(request, secret, clock.now())
            if limiter_of is not None:
                bucket = (("agent-deflections", principal.key) if principal.is_agent
                          else ("deflections", principal.shop or ""))
                await charge(limiter_of(request), clock.now(), (*bucket, deflection_rate), what="deflections")
            body = await _small_json(request)
            article_id = body.get("article")
            query = body.get("query")
            if not isinstance(article_id, str) or not article_id:
                raise BadRequest("article must be an article id")
            if query is not None and (not isinstance(query, str) or len(query) > MAX_QUERY_CHARS):
                raise BadRequest(f"query must be text of at most {MAX_QUERY_CHARS} characters")
            problem = None if query is None else text_problem(query)
            if problem is not None:
                raise BadRequest(f"query {problem}")
            if index.article(article_id) is None:
                raise NotFound(f"no help article {article_id[:100]!r}")
            await deflections_of(request).record(article_id, principal, query, clock.now())
        except PomocError as err:
            return error_response(err)
        log.info("help.deflected", extra={"article_id": article_id})
        return Response(status_code=204)

    return [
        Route("/api/help/search", search, methods=["GET"]),
        Route("/api/help/deflections", deflection, methods=["POST"]),
    ]


async def _small_json(request: Request) -> dict[str, object]:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > _MAX_DEFLECTION_BODY:
            raise BadRequest("the request body is too large")
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks) or b"null")
    except ValueError:
        raise BadRequest("the body must be JSON") from None
    if not isinstance(body, dict):
        raise BadRequest('the body must be a JSON object: {"article": …, "query": …}')
    return body
