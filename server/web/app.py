"""The application factory: `create_app(settings, clock=...)`.

The lifespan enters the process's wiring (`server.chat.runtime.running`: database,
Redis, bus, writer, inbox feed, heartbeat) and keeps its adapters in the app's
state for the endpoints; `extra_tasks` (the jobs, in embedded mode) run beside it.
Nothing is built at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from server.chat.adapters import Adapters
from server.chat.runtime import Background, running
from server.chat.scrape import Scrape
from server.clock import Clock, OffsetClock, SystemClock
from server.rules.config import Rules
from server.rules.helpsearch import HelpIndex
from server.settings import Settings
from server.store.canned import CannedStore
from server.store.notifications import NotificationStore
from server.web import attachments_api, canned_api, help_api, mail_pages, metrics_api, pages, reports_api
from server.web.headers import SecurityHeaders
from server.web.uploads import UploadLimits
from server.ws import websocket_endpoint

log = logging.getLogger(__name__)
GC_YOUNG_THRESHOLD = 7_000  # allocations between young collections (CPython's default: 700)
WIDGET_DIR = Path(__file__).resolve().parents[2] / "widget"

# A task that runs beside the web server for as long as it does (the jobs, in embedded mode).
ExtraTask = Callable[[Adapters], Coroutine[Any, Any, None]]


def clock_for(settings: Settings) -> Clock:
    return OffsetClock(settings.clock_start) if settings.clock_start else SystemClock()


def tune_gc() -> None:
    """Everything made while starting (modules, tables, compiled statements) lives
    as long as the process: freeze it out of the collector's full passes, and
    collect the youngest objects less eagerly. A node with thousands of connections
    otherwise spends a tenth of its CPU re-walking objects that never die."""
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, second, third)


def create_app(settings: Settings, clock: Clock | None = None, *, extra_tasks: Sequence[ExtraTask] = ()) -> Starlette:
    clock = clock or clock_for(settings)
    rules = Rules.from_settings(settings)
    help_index = HelpIndex.from_directory(settings.help_dir)
    wall = SystemClock()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with running(settings, clock, rules) as a:
            app.state.adapters = a
            app.state.scrape = Scrape(a)
            background = Background()
            for task in extra_tasks:
                background.start(getattr(task, "__name__", "extra"), task(a))
            tune_gc()
            try:
                yield
            finally:
                await background.stop()

    routes = [
        WebSocketRoute("/ws", websocket_endpoint),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/embed.js", embed_js),
        *metrics_api.routes(settings.metrics_token, lambda r: r.app.state.scrape),
        # Tokens and signed links live on real time, whatever POMOC_CLOCK says.
        *attachments_api.routes(store_of=lambda r: _adapters(r).attachments, secret=settings.secret, clock=wall,
                                limits=UploadLimits(max_bytes=settings.attachment_max_bytes),
                                limiter_of=lambda r: _adapters(r).limiter, upload_rate=rules.limits.shop_uploads),
        *help_api.routes(index=help_index, deflections_of=lambda r: _adapters(r).deflections,
                         secret=settings.secret, clock=wall, limiter_of=lambda r: _adapters(r).limiter,
                         deflection_rate=rules.limits.shop_deflections),
        *canned_api.routes(store_of=lambda r: CannedStore(_adapters(r).engine), secret=settings.secret, clock=wall,
                           departments=[d.key for d in rules.departments], index=help_index,
                           public_base=settings.public_base),
        *reports_api.routes(store_of=lambda r: _adapters(r).reports, secret=settings.secret, wall=wall,
                            clock_of=lambda r: _adapters(r).clock, tz=settings.timezone),
        *pages.routes(settings),
        *mail_pages.routes(settings, store_of=lambda r: NotificationStore(_adapters(r).engine),
                           clock_of=lambda r: _adapters(r).clock, demo_email=pages.DEMO_CUSTOMER_EMAIL),
    ]
    # Outermost: every response, the CORS preflights too, gets its security headers.
    # The widget calls /api from the shop's own domain (uploads carry a Bearer token).
    middleware = [Middleware(SecurityHeaders, framers=settings.allowed_origins),
                  Middleware(CORSMiddleware, allow_origins=list(settings.allowed_origins),
                             allow_methods=["GET", "POST", "HEAD"], allow_headers=["Authorization", "Content-Type"],
                             max_age=600)]
    return PomocApp(routes=routes, lifespan=lifespan, middleware=middleware)


class PomocApp(Starlette):
    """The app, with `/ws` handed straight to its endpoint.

    The middleware acts on HTTP responses only (security headers, CORS) and passes a
    WebSocket through untouched, and the router would only find the one route: six
    wrapper calls per connection and per frame sent, which a reconnect storm pays
    thousands of times over. The upgrade's checks (origin, limits, draining) are the
    endpoint's own; a bug in it still ends in uvicorn's 1011 close, as before."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == "/ws":
            scope["app"] = self
            await websocket_endpoint(WebSocket(scope, receive, send))
            return
        await super().__call__(scope, receive, send)


def _adapters(request: Request) -> Adapters:
    adapters: Adapters = request.app.state.adapters
    return adapters


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def readyz(request: Request) -> Response:
    a = _adapters(request)
    checks: dict[str, str] = {}
    try:
        async with a.engine.connect() as conn:
            await asyncio.wait_for(conn.execute(text("SELECT 1")), 2)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"down: {type(exc).__name__}"
    try:
        await asyncio.wait_for(a.redis.ping(), 2)
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"down: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"ready": ok, **checks}, status_code=200 if ok else 503)


async def embed_js(request: Request) -> Response:
    path = WIDGET_DIR / "embed.js"
    if not path.is_file():
        return JSONResponse({"error": {"code": "not_found", "message": "widget not built"}}, status_code=404)
    return FileResponse(path, media_type="application/javascript; charset=utf-8",
                        headers={"Cache-Control": "public, max-age=300"})
