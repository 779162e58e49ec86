"""The application factory: `create_app(settings, clock=...)`.

The lifespan opens the database engine and Redis (or the in-process stand-in in
embedded mode), builds this process's `Node`, starts its background tasks (the bus
subscriber, the inbox flusher) and closes everything on shutdown. Nothing is built
at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.driver_info import DriverInfo
from redis.retry import Retry
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute

from server import attachments_api, helpcenter_api, models, pages
from server.attachments import AttachmentStore
from server.bus import Bus
from server.clock import Clock, OffsetClock, SystemClock
from server.db import create_engine
from server.helpcenter import HelpIndex
from server.helpcenter_api import DeflectionStore
from server.jobs import Jobs
from server.keys import Keys
from server.node import Node
from server.settings import Settings
from server.threads import ThreadStore
from server.uploads import UploadLimits
from server.ws import websocket_endpoint

log = logging.getLogger(__name__)
GC_YOUNG_THRESHOLD = 7_000  # allocations between young collections (CPython's default: 700)
WIDGET_DIR = Path(__file__).resolve().parent.parent / "widget"


def clock_for(settings: Settings) -> Clock:
    return OffsetClock(settings.clock_start) if settings.clock_start else SystemClock()


def open_redis(settings: Settings) -> tuple[Redis, Redis]:
    """A command client and a separate subscriber client.

    The command pool blocks (up to 10 s) for a free connection instead of failing
    under load, and commands time out after 10 s; the subscriber has no read timeout
    (it is idle by nature) and no retries of its own, because the bus owns the
    reconnect and must know when it happened.
    """
    if settings.embedded_redis:
        import fakeredis

        server = fakeredis.FakeServer()
        return fakeredis.FakeAsyncRedis(server=server), fakeredis.FakeAsyncRedis(server=server)
    # One DriverInfo for every connection: without it redis-py looks its own version up
    # in the installed packages' metadata for each new connection (milliseconds each,
    # a tenth of a node's CPU while a reconnect storm grows the pool).
    driver = DriverInfo()
    pool = BlockingConnectionPool.from_url(
        settings.redis_url, max_connections=64, timeout=10, socket_timeout=10, socket_connect_timeout=2,
        socket_keepalive=True, health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2), driver_info=driver,
    )
    subscriber = Redis.from_url(settings.redis_url, socket_timeout=None, socket_connect_timeout=2,
                                socket_keepalive=True, retry=Retry(NoBackoff(), 0), driver_info=driver)
    return Redis(connection_pool=pool), subscriber


def tune_gc() -> None:
    """Everything made while starting (modules, tables, compiled statements) lives
    as long as the process: freeze it out of the collector's full passes, and
    collect the youngest objects less eagerly. A node with thousands of connections
    otherwise spends a tenth of its CPU re-walking objects that never die."""
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, second, third)


class Background:
    """Owns the background tasks: a failure is logged (never silent) and shutdown
    cancels and awaits every one of them."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()

    def start(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(self._guard(name, coro), name=name)
        self.tasks.add(task)

    async def _guard(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("task.failed", extra={"task": name})

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()


@contextlib.asynccontextmanager
async def running_node(settings: Settings, clock: Clock, *, background: Background) -> AsyncIterator[Node]:
    """This process's node: database, Redis, bus and live state, with its background
    tasks (the web server and the worker share this)."""
    engine = create_engine(settings)
    redis, subscriber = open_redis(settings)
    node_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    bus = Bus(redis, subscriber, node_id)
    attachments = AttachmentStore(engine, models.attachments, settings.attachments_dir, settings.secret,
                                  link_ttl=settings.attachment_link_ttl,
                                  max_per_message=settings.attachments_per_message,
                                  max_pixels=settings.attachment_max_pixels)
    node = Node(settings, clock, ThreadStore(engine), redis, bus, Keys(settings.redis_prefix), attachments)
    background.start("bus", bus.run())
    background.start("writer", node.writer.run())
    log.info("node.started", extra={"node_id": node_id})
    try:
        yield node
    finally:
        await node.drain()
        await background.stop()
        await bus.stop()
        await redis.aclose()
        await subscriber.aclose()
        await engine.dispose()
        log.info("node.stopped", extra={"node_id": node_id})


def create_app(settings: Settings, clock: Clock | None = None) -> Starlette:
    clock = clock or clock_for(settings)
    help_index = HelpIndex.from_directory(settings.help_dir)
    wall = SystemClock()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        background = Background()
        async with running_node(settings, clock, background=background) as node:
            app.state.node = node
            app.state.attachments = node.attachments
            app.state.deflections = DeflectionStore(node.store.engine, models.help_deflections)
            background.start("inbox", node.run_inbox_flusher())
            background.start("heartbeat", node.live.run_heartbeat())
            jobs = Jobs(node) if settings.run_jobs_in_web else None
            if jobs is not None:
                background.start("jobs", jobs.run_forever())
            tune_gc()
            try:
                yield
            finally:
                await background.stop()
                if jobs is not None:
                    await jobs.aclose()

    routes = [
        WebSocketRoute("/ws", websocket_endpoint),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/embed.js", embed_js),
        # Tokens and signed links live on real time, whatever POMOC_CLOCK says.
        *attachments_api.routes(store_of=lambda r: r.app.state.attachments, secret=settings.secret, clock=wall,
                                limits=UploadLimits(max_bytes=settings.attachment_max_bytes)),
        *helpcenter_api.routes(index=help_index, deflections_of=lambda r: r.app.state.deflections,
                               secret=settings.secret, clock=wall),
        *pages.routes(settings),
    ]
    # The widget calls /api from the shop's own domain (uploads carry a Bearer token).
    middleware = [Middleware(CORSMiddleware, allow_origins=list(settings.allowed_origins),
                             allow_methods=["GET", "POST", "HEAD"], allow_headers=["Authorization", "Content-Type"],
                             max_age=600)]
    return Starlette(routes=routes, lifespan=lifespan, middleware=middleware)


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def readyz(request: Request) -> Response:
    node: Node = request.app.state.node
    checks: dict[str, str] = {}
    try:
        async with node.store.engine.connect() as conn:
            await asyncio.wait_for(conn.execute(text("SELECT 1")), 2)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"down: {type(exc).__name__}"
    try:
        await asyncio.wait_for(node.redis.ping(), 2)
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
