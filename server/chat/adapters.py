"""What a process's use cases are handed: its adapters and services, in one frozen record.

Built once per process by `server.chat.runtime.running` (the web server and the
worker wire the same way) and passed explicitly to every use case. It holds
things and does nothing itself: no method here, no reaching through it to an
adapter's insides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from server.clock import Clock
from server.metrics import Metrics
from server.presence import Arrivals, Presence
from server.protocol.session import Config, Session
from server.realtime.admission import Connections
from server.realtime.bus import Bus
from server.realtime.keys import Keys
from server.realtime.ratelimit import RateLimiter
from server.realtime.router import Router
from server.realtime.unread import UnreadBook
from server.rules.config import Rules
from server.settings import Settings
from server.store.agents import AgentStore
from server.store.attachments import AttachmentStore
from server.store.deflections import DeflectionStore
from server.store.hello_reads import HelloReads
from server.store.lifecycle import Lifecycle
from server.store.messages import MessageStore
from server.store.ratings import RatingStore
from server.store.reads import ReadStore
from server.store.reports import ReportStore
from server.store.search import SearchStore
from server.store.tickets import TicketStore
from server.store.writer import MessageWriter

if TYPE_CHECKING:
    from server.chat.announce import Announcer
    from server.chat.assignment import Assigner
    from server.chat.attendance import Attendance
    from server.chat.collision import Collision
    from server.chat.connection import Roster
    from server.chat.readers import Readers


@dataclass(frozen=True, slots=True)
class Adapters:
    settings: Settings
    rules: Rules
    clock: Clock  # the support rules' clock (POMOC_CLOCK moves it)
    wall: Clock  # the real time, for what other systems stamp (token expiry, signed links)
    node_id: str
    session_config: Config
    # the database
    engine: AsyncEngine
    tickets: TicketStore
    messages: MessageStore
    reads: ReadStore
    writer: MessageWriter
    hello_reads: HelloReads  # a customer hello's reads, batched across concurrent hellos
    attachments: AttachmentStore
    deflections: DeflectionStore
    lifecycle: Lifecycle
    search: SearchStore
    agents: AgentStore
    ratings: RatingStore
    reports: ReportStore
    # Redis
    redis: Redis
    keys: Keys
    bus: Bus
    router: Router[Session]
    book: UnreadBook
    presence: Presence
    arrivals: Arrivals
    connections: Connections
    limiter: RateLimiter
    # this process's services
    announce: Announcer
    readers: Readers
    attendance: Attendance
    roster: Roster
    metrics: Metrics  # this process's registry and instruments
    collision: Collision
    assigner: Assigner
