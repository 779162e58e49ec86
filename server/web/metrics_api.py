"""`GET /metrics`: this process's metrics in Prometheus' text format.

Served by every web node and, on a port of its own (`POMOC_WORKER_METRICS_PORT`),
by the worker (`app`: a Starlette app with this route alone, run by
`python -m server worker`). With `POMOC_METRICS_TOKEN` set, a scrape must carry
`Authorization: Bearer <token>` (compared in constant time) or is answered 401;
unset, the endpoint is open, as most Prometheus setups expect on a private network.
What the scrape reads and how often it touches the database: `server.chat.scrape`.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from server.chat.scrape import Scrape
from server.errors import Unauthorized
from server.metrics import CONTENT_TYPE, token_matches
from server.web.http_api import error_response


def routes(token: str | None, scrape_of: Callable[[Request], Scrape]) -> list[BaseRoute]:
    async def metrics(request: Request) -> Response:
        if token and not token_matches(request.headers.get("authorization"), token):
            return error_response(Unauthorized("send Authorization: Bearer <POMOC_METRICS_TOKEN>"))
        body = await scrape_of(request).render()
        return Response(body, headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})

    return [Route("/metrics", metrics, methods=["GET"])]


def app(scrape: Scrape, token: str | None) -> Starlette:
    """The worker's metrics endpoint, and liveness beside it (`/healthz`, `/readyz`:
    answered once the worker's wiring is up, since this app is served from inside it)."""

    async def alive(request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(routes=[*routes(token, lambda _: scrape), Route("/healthz", alive), Route("/readyz", alive)])
