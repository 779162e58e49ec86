"""Connections joined in memory: sessions, routers and a bus without sockets or Redis.

In the manner of h11's `ConnectionPair`: each `Node` has a router and publishes
envelopes onto a `MemoryBus` that hands them to every other node's router, exactly
as Redis pub/sub would — or drops the ones a test tells it to lose. A `Peer` is a
sans-I/O session with its outbox read back as decoded frames.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from server.principal import Principal, Role
from server.protocol import views
from server.protocol.codec import JSON, Codec
from server.protocol.events import Event, Source, envelope, open_envelope
from server.protocol.session import Config, Session
from server.realtime.router import Router
from server.rules.records import Author, Message

AT = datetime(2026, 11, 18, 9, 0, tzinfo=UTC)


class Peer:
    """A session and what it has sent to its client so far."""

    def __init__(self, conn_id: str = "c1", codec: Codec = JSON, config: Config | None = None) -> None:
        self.wakes = 0
        self.session = Session(conn_id, codec, config or Config(), self)
        self.sent: list[dict[str, Any]] = []

    def wake(self) -> None:
        self.wakes += 1

    def frames(self) -> list[dict[str, Any]]:
        """Everything the session queued since the last call, decoded."""
        new = [self.session.codec.decode(data) for data in self.session.data_to_send()]
        self.sent.extend(new)
        return new

    def open_as(self, principal: Principal, *, feed: bool = True, follows: dict[int, tuple[str, int]] | None = None
                ) -> None:
        """Through the hello, as the use case would do it."""
        incoming = self.session.receive(self.session.codec.encode({"type": "hello", "token": "t"}), 0.0)
        assert incoming is not None
        self.session.authenticated(principal, feed)
        for ticket, (shop, cursor) in (follows or {}).items():
            self.session.follow(ticket, shop, cursor)
        self.session.reply({"type": "welcome"})
        self.session.opened()
        self.frames()


def customer(shop: str = "s1", sub: str = "u1") -> Principal:
    return Principal(Role.customer, sub, "Ala", shop=shop, shop_name="Sklep", plan="standard")


def agent(sub: str = "a1") -> Principal:
    return Principal(Role.agent, sub, "Agnieszka")


def message(ticket: int, seq: int, *, author: Author | None = None, held: bool = False) -> Message:
    return Message(ticket, seq, 1000 + seq, author or Author("customer", "u1", "Ala"), f"wiadomość {seq}", AT,
                   f"cid-{ticket}-{seq}", queued_until=AT + timedelta(days=1) if held else None)


def message_event(m: Message, *, origin: str | None = None, held: bool = False) -> Event:
    return Event("message", views.message(m), origin, held=held)


@dataclass
class MemoryBus:
    """Redis pub/sub in memory: what one node publishes, every other node receives."""

    nodes: list[Node] = field(default_factory=list)
    lose: Callable[[str, bytes], bool] = lambda channel, payload: False

    def publish(self, sender: Node, channel: str, payload: bytes) -> None:
        if self.lose(channel, payload):
            return
        for node in self.nodes:
            # Like Redis, the sender hears its own events too; its router drops them.
            node.router.route_payload(channel, payload)


class Node:
    def __init__(self, name: str, bus: MemoryBus) -> None:
        self.name = name
        self.bus = bus
        self.router: Router[Session] = Router(name, open_envelope)
        bus.nodes.append(self)

    def listen(self, peer: Peer, channel: str, source: Source) -> None:
        peer.session.channels += (channel,)
        self.router.listen(peer.session, channel, source)

    def announce(self, channel: str, event: Event) -> None:
        """This node's own connections at once, the others through the bus."""
        self.router.route(channel, event)
        self.bus.publish(self, channel, envelope(self.name, event))
