"""Wiring one process: every adapter and service built once, every background task owned.

`running(settings, clock)` is the one place a process is put together — the web
server and the worker both enter it, so whatever one runs the other runs too: the
Redis health probe (and, when Redis answers again, the replay of what could not be
published meanwhile), the bus subscriber, the group-commit writer, the agents' inbox feed (announcements from
a worker's queue release reach the inboxes like a web node's), the heartbeat, and
the catch-up after Redis comes back. Tasks are owned by `Background`: a failure is
logged (never silent) and shutdown cancels and awaits every one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from server.chat.adapters import Adapters
from server.chat.announce import Announcer
from server.chat.assignment import Assigner
from server.chat.attendance import SEEN_FOR, Attendance
from server.chat.collision import Collision
from server.chat.connection import Roster
from server.chat.readers import Readers
from server.clock import Clock, SystemClock
from server.metrics import Metrics
from server.presence import Arrivals, Presence
from server.protocol import frames
from server.protocol.events import open_envelope, own_prefix
from server.protocol.session import Config, Session
from server.realtime.admission import Connections
from server.realtime.bus import Bus
from server.realtime.clients import open_redis
from server.realtime.health import RedisHealth
from server.realtime.keys import Keys
from server.realtime.ratelimit import RateLimiter
from server.realtime.router import Router
from server.realtime.unread import UnreadBook
from server.realtime.viewers import Viewers
from server.rules.config import Rules
from server.settings import Settings
from server.store import models
from server.store.agents import AgentStore
from server.store.attachments import AttachmentStore
from server.store.db import count_errors, create_engine, watch
from server.store.deflections import DeflectionStore
from server.store.hello_reads import HelloReads
from server.store.images import ImageChecker
from server.store.lifecycle import Lifecycle
from server.store.messages import MessageStore
from server.store.ratings import RatingStore
from server.store.reads import ReadStore
from server.store.reports import ReportStore
from server.store.search import SearchStore
from server.store.tickets import TicketStore
from server.store.writer import MessageWriter

log = logging.getLogger(__name__)


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

    async def stop(self, rounds: int = 5, wait: float = 2.0) -> None:
        # A task may swallow its cancel (a library that turns it into its own timeout,
        # which the task then handles as a failure): cancel again rather than wait for
        # ever, and say which task it was.
        pending = set(self.tasks)
        for _ in range(rounds):
            if not pending:
                break
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=wait)
        if pending:
            log.error("task.not_stopping", extra={"tasks": sorted(t.get_name() for t in pending)})
        self.tasks.clear()


def session_config(settings: Settings) -> Config:
    return Config(limits=frames.Limits(max_body_chars=settings.max_body_chars,
                                       max_title_chars=settings.max_title_chars,
                                       history_page_max=settings.history_page_max,
                                       list_page_max=settings.welcome_tickets_max),
                  send_queue_max=settings.send_queue_max, max_bad_frames=settings.max_bad_frames,
                  bad_frame_window=settings.bad_frame_window.total_seconds(),
                  max_rate_limited=settings.max_rate_limited)


async def _catch_up_after_redis(a: Adapters) -> None:
    """Whenever the subscriber is back after losing Redis: every connection fetches
    what it missed from the database, and the readers here are rebuilt."""
    while True:
        await a.bus.returned()
        sessions = a.roster.sessions()
        for session in sessions:
            session.catch_up()
        await a.readers.rebuild_all(s.principal for s in sessions if s.principal is not None)


@contextlib.asynccontextmanager
async def running(settings: Settings, clock: Clock, rules: Rules | None = None,
                  metrics: Metrics | None = None) -> AsyncIterator[Adapters]:
    """This process's adapters, with its background tasks running until the block ends."""
    rules = rules or Rules.from_settings(settings)
    # The process's own registry: two apps in one process never share a counter.
    metrics = metrics or Metrics()
    engine = create_engine(settings)
    count_errors(engine, metrics.database_failed)
    # Every Redis call has a deadline; one call that misses it, or cannot connect,
    # makes every user of Redis here skip it until the probe gets an answer again.
    health = RedisHealth(settings.redis_timeout.total_seconds())
    redis, subscriber, probe = open_redis(settings, health, metrics.redis_failed)
    node_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    keys = Keys(settings.redis_prefix)
    router: Router[Session] = Router(node_id, open_envelope, own_prefix(node_id))
    bus = Bus(redis, subscriber, router.route_payload, health)
    tickets, messages, reads = TicketStore(engine), MessageStore(engine), ReadStore(engine)
    book = UnreadBook(redis, keys, health)
    presence = Presence(redis, keys, settings.presence_ttl)
    wall = SystemClock()
    announce = Announcer(node_id=node_id, keys=keys, bus=bus, router=router, book=book, reads=reads,
                         tickets=tickets, presence=presence, clock=clock, wall=wall, health=health,
                         metrics=metrics)
    attachments = AttachmentStore(engine, models.attachments, settings.attachments_dir, settings.secret,
                                  link_ttl=settings.attachment_link_ttl,
                                  max_per_message=settings.attachments_per_message,
                                  max_pixels=settings.attachment_max_pixels,
                                  images=ImageChecker(max_pixels=settings.attachment_max_pixels,
                                                      memory_bytes=settings.image_check_memory,
                                                      cpu_seconds=settings.image_check_cpu.total_seconds(),
                                                      concurrency=settings.image_checks))
    # Beats whenever the database answers: the writer's commits and the hellos' batched reads.
    pulse = watch(engine)
    hello_reads = HelloReads(engine, tickets, messages, reads, attachments, wall, pulse, metrics.database_failed,
                             shop_limit=settings.welcome_tickets_max)
    readers = Readers(book, reads, tickets, announce, settings.welcome_tickets_max,
                      unread_state=hello_reads.unread_state)
    roster = Roster(settings.max_connections, settings.max_pending, settings.max_pending_per_address,
                    settings.hello_concurrency)
    metrics.view(connections=roster.by_role, delivered=roster.delivered)
    connections = Connections(redis, keys, settings.presence_ttl, health)
    arrivals = Arrivals(redis, keys, settings.presence_ttl, SEEN_FOR, health)
    collision = Collision(Viewers(redis, keys, settings.presence_ttl), announce, wall)
    attendance = Attendance(redis=redis, keys=keys, node_id=node_id, settings=settings, wall=wall,
                            presence=presence, arrivals=arrivals, connections=connections, announce=announce,
                            readers=readers, roster=roster, user_connections=rules.limits.user_connections,
                            collision=collision)
    writer = MessageWriter(messages, rules.policy.hold, rules.policy.closed_until, announce.committed,
                           concurrency=settings.writer_concurrency, beliefs=settings.writer_beliefs,
                           timeout=settings.database_timeout.total_seconds(), pulse=pulse,
                           metrics=metrics, start=rules.policy.next_response,
                           seconds=rules.policy.working_seconds)
    agents = AgentStore(engine)
    assigner = Assigner(settings=settings, agents=agents, tickets=tickets, presence=presence, announce=announce,
                        roster=roster, clock=clock)
    a = Adapters(
        settings=settings, rules=rules, clock=clock, wall=wall, node_id=node_id,
        session_config=session_config(settings), engine=engine, tickets=tickets, messages=messages, reads=reads,
        writer=writer, hello_reads=hello_reads, attachments=attachments,
        deflections=DeflectionStore(engine, models.help_deflections),
        lifecycle=Lifecycle(engine, rules.lifecycle, settings.purge_batch), search=SearchStore(engine),
        ratings=RatingStore(engine), reports=ReportStore(engine),
        redis=redis, keys=keys, bus=bus,
        router=router, book=book, presence=presence, arrivals=arrivals, connections=connections,
        limiter=RateLimiter(redis, keys, rules.limits, health), announce=announce, readers=readers,
        attendance=attendance, roster=roster, metrics=metrics, collision=collision, agents=agents,
        assigner=assigner,
    )
    background = Background()
    background.start("redis-health", health.run(probe.time))
    background.start("bus", bus.run())
    background.start("writer", writer.run())
    background.start("heartbeat", attendance.run_heartbeat())
    background.start("catch-up", _catch_up_after_redis(a))
    background.start("agents-seen", assigner.run_seen())
    log.info("node.started", extra={"node_id": node_id})
    try:
        async with announce.running():
            try:
                yield a
            finally:
                await roster.drain()
    finally:
        await background.stop()
        await bus.stop()
        await redis.aclose()
        await subscriber.aclose()
        await engine.dispose()
        log.info("node.stopped", extra={"node_id": node_id})
