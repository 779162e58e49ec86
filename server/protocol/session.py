"""One connection's protocol state machine, sans I/O.

In the manner of `websockets`' `Protocol`: bytes and events in, effects out, no
socket, no database, no Redis: it must not import starlette, redis, sqlalchemy,
asyncio or jwt. The shell around it (`server.ws` for the
socket, `server.chat.connection` for the rest) feeds it and carries out its effects:

- in: `receive(data)` — one frame from the client, decoded and validated into an
  `Incoming` request for the use cases, or answered with an `error` at once;
  `deliver(source, event)` — an event from this or another node;
  `filled(ticket, …)` — messages fetched from the database for a gap;
  and the use cases' results (`welcome`, `reply`, `own`, `fail`, …);
- out: `data_to_send()` — encoded frames for the socket; `gaps()` — messages to fetch
  from the database; `close_code` — close the socket with this code; and a call to
  its shell's `wake()` (the shell is given at construction) whenever any of those
  has something new.

States (the connection's life, as a table):

| state      | on                              | next       |
| ---------- | ------------------------------- | ---------- |
| HELLO      | `hello` frame                   | (the use case runs) → `authenticated` → WELCOMING |
| HELLO      | any other frame                 | HELLO, `error unauthorized` |
| WELCOMING  | `opened()` after the welcome    | OPEN (events that came meanwhile go out in order) |
| WELCOMING  | `hello_failed()`                | HELLO (the client may say hello again) |
| OPEN       | `hello` frame                   | OPEN, `error bad_request` |
| OPEN       | `auth` frame                    | OPEN (the edge checks the new token: `authenticated` or an error) |
| any        | `close(code)`                   | CLOSED: nothing more is queued |

Backpressure: the outbox is bounded; a client that cannot keep up is closed with
1013 (it reconnects and resumes) instead of being buffered without limit. Repeated
bad frames or rate-limited requests close it with 4429.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from server.errors import (
    CLOSE_RATE_LIMITED,
    CLOSE_TRY_AGAIN,
    BadRequest,
    PomocError,
    RateLimited,
    Unauthorized,
)
from server.principal import Principal
from server.protocol import frames, views
from server.protocol.codec import Codec
from server.protocol.delivery import Follow, Gap, accepts
from server.protocol.events import Event, Source

HELLO, WELCOMING, OPEN, CLOSED = 0, 1, 2, 3
TYPING_EVERY = 2.0  # seconds: at most one typing relay per sender and ticket


@dataclass(frozen=True, slots=True)
class Config:
    limits: frames.Limits = frames.Limits()
    send_queue_max: int = 1000
    max_bad_frames: int = 1000
    bad_frame_window: float = 10.0  # seconds
    max_rate_limited: int = 50  # rate-limited answers per minute before 4429


class Shell(Protocol):
    """What carries out the session's effects: told whenever there is something new
    to send, to fetch or to close (the session itself never waits)."""

    def wake(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Incoming:
    """A valid request from the client, for the use cases to carry out."""

    request: frames.Request
    ref: object


class Session:
    __slots__ = ("conn_id", "codec", "config", "_shell", "state", "principal", "feed", "admitted",
                 "presence_status", "follows", "unread", "channels", "close_code", "close_reason", "_outbox",
                 "_early", "_gaps", "_bad", "_limited", "_typing_sent", "delivered")

    def __init__(self, conn_id: str, codec: Codec, config: Config, shell: Shell) -> None:
        self.conn_id = conn_id
        self.codec = codec
        self.config = config
        self._shell = shell
        self.state = HELLO
        self.principal: Principal | None = None
        self.feed = True
        self.admitted = False  # counted against its user's connection limit
        self.presence_status = "online"
        self.follows: dict[int, Follow] = {}
        self.unread: dict[int, int] = {}
        # The channels this connection listens on (a handful: a tuple is the smallest).
        self.channels: tuple[str, ...] = ()
        self.close_code: int | None = None
        self.close_reason = ""
        self._outbox: list[bytes] = []
        # Rarely needed: made on first use (an idle connection stays small).
        self._early: list[tuple[Source, Event]] | None = None
        self._gaps: list[Gap] | None = None
        self._bad: deque[float] | None = None
        self._limited: deque[float] | None = None
        self._typing_sent: dict[int, float] | None = None
        # Messages handed to this connection as committed or filled (the node's
        # metrics add these up at scrape time: nothing is counted per message elsewhere).
        self.delivered = 0

    @property
    def counts_as_presence(self) -> bool:
        """Agents with the inbox feed are people at a console; feed-less ones are bots."""
        return self.principal is not None and self.principal.is_agent and self.feed

    # ----------------------------------------------------------------- input
    def receive(self, data: bytes | str, now: float) -> Incoming | None:
        """One frame from the client: a request to carry out, or None (answered already)."""
        if self.state == CLOSED:
            return None
        ref: object = None
        try:
            frame = self.codec.decode(data)
            ref = frames.valid_ref(frame)
            request = frames.parse(frame, self.config.limits)
            if self.state == HELLO and not isinstance(request, frames.Hello):
                raise Unauthorized("say hello with a token first")
            if self.state != HELLO and isinstance(request, frames.Hello):
                raise BadRequest("hello was already said on this connection")
        except PomocError as err:
            self.fail(err, ref, now)
            return None
        return Incoming(request, ref)

    def fail(self, err: PomocError, ref: object, now: float) -> bool:
        """A request failed: the client hears why. True when this closed the
        connection for abuse (the caller then makes the user cool down)."""
        self.reply(views.error(err), ref)
        if isinstance(err, BadRequest | Unauthorized) and self.principal is not None:
            bad = self._bad = self._bad if self._bad is not None else deque()
            if _count(bad, now, self.config.bad_frame_window) > self.config.max_bad_frames * 5:
                self.close(CLOSE_RATE_LIMITED, "too many bad frames")
        elif isinstance(err, RateLimited):
            limited = self._limited = self._limited if self._limited is not None else deque()
            if _count(limited, now, 60.0) > self.config.max_rate_limited and self.close_code is None:
                self.close(CLOSE_RATE_LIMITED, "rate limited too often; slow down")
                return self.principal is not None
        return False

    def may_relay_typing(self, ticket_id: int, now: float) -> bool:
        sent = self._typing_sent = self._typing_sent if self._typing_sent is not None else {}
        if now - sent.get(ticket_id, -1e9) < TYPING_EVERY:
            return False
        sent[ticket_id] = now
        return True

    # ----------------------------------------------------------------- hello
    def authenticated(self, principal: Principal, feed: bool) -> None:
        """The hello's token is good and the connection admitted: from now on events
        for this principal are collected (sent after the welcome)."""
        self.principal = principal
        self.feed = feed if principal.is_agent else True
        self.admitted = True
        self.state = WELCOMING

    def hello_failed(self) -> None:
        """The hello could not be completed (a dependency failed): back to the start,
        the client may say hello again on this connection."""
        self.principal = None
        self.admitted = False
        self.follows.clear()
        self.unread.clear()
        self._early = None
        if self.state != CLOSED:
            self.state = HELLO

    def opened(self) -> None:
        """The welcome (and any replay) is queued: what arrived meanwhile goes out now."""
        if self.state != WELCOMING:
            return
        self.state = OPEN
        early, self._early = self._early or [], None
        for source, event in early:
            self.deliver(source, event)

    # ---------------------------------------------------------------- output
    def reply(self, frame: dict[str, Any], ref: object = None) -> None:
        if ref is not None:
            frame = {**frame, "ref": ref}
        self.push(self.codec.encode(frame))

    def push(self, data: bytes) -> None:
        if self.close_code is not None:
            return
        if len(self._outbox) >= self.config.send_queue_max:
            self.close(CLOSE_TRY_AGAIN, "too slow to keep up; reconnect and resume")
            return
        self._outbox.append(data)
        self._shell.wake()

    @property
    def queued(self) -> int:
        """Frames waiting for the socket."""
        return len(self._outbox)

    def data_to_send(self) -> list[bytes]:
        """The frames to write now. Once closing, only what explains the close (not
        for a client too slow to take anything anyway)."""
        if not self._outbox or self.close_code == CLOSE_TRY_AGAIN:
            return []
        batch, self._outbox = self._outbox, []
        return batch

    def close(self, code: int, reason: str = "") -> None:
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
            self.state = CLOSED
            self._shell.wake()

    # ------------------------------------------------------------- tickets
    def follow(self, ticket_id: int, shop: str, cursor: int) -> Follow:
        """Deliver this ticket's messages after `cursor` (kept if already followed)."""
        follow = self.follows.get(ticket_id)
        if follow is None:
            follow = self.follows[ticket_id] = Follow(shop, cursor)
        return follow

    def unfollow(self, ticket_id: int) -> Follow | None:
        """Stop delivering this ticket (the console closed it); what it was, if followed."""
        return self.follows.pop(ticket_id, None)

    def viewing(self) -> list[int]:
        """The tickets this connection's agent counts as viewing."""
        return [t for t, f in self.follows.items() if f.viewing]

    def own(self, ticket_id: int, seq: int) -> None:
        """This connection sent `seq`: it got an ack, not a copy."""
        follow = self.follows.get(ticket_id)
        if follow is None:
            return
        if follow.filling or seq > follow.cursor + 1:
            follow.own.add(seq)
            if not follow.filling:
                self._want_gap(ticket_id, follow, seq)
        elif seq == follow.cursor + 1:
            follow.cursor = seq

    def catch_up(self) -> None:
        """Redis came back: fetch whatever was published while it was away."""
        for ticket_id, follow in self.follows.items():
            if not follow.filling:
                self._want_gap(ticket_id, follow, None)

    # ------------------------------------------------------------- delivery
    def deliver(self, source: Source, event: Event) -> None:
        """An event from the bus (this node or another) that may concern this connection."""
        if self.state == WELCOMING:
            early = self._early = self._early if self._early is not None else []
            if len(early) >= self.config.send_queue_max:
                self.close(CLOSE_TRY_AGAIN, "too slow to keep up; reconnect and resume")
            else:
                early.append((source, event))
            return
        if self.state != OPEN or not accepts(self, source, event):
            return
        kind = event.kind
        if kind == "message":
            self._message(event)
        elif kind == "ticket":
            self._ticket(event)
        elif kind == "unread":
            for key, value in event.frame["tickets"].items():
                self.unread[int(key)] = value
            if event.origin == self.conn_id and event.ref is not None:
                self.reply(event.frame, event.ref)  # the reply to this connection's `read`
            else:
                self.push(event.encoded(self.codec))
        else:
            self.push(event.encoded(self.codec))

    def _ticket(self, event: Event) -> None:
        ticket = event.frame["ticket"]
        ticket_id = ticket["id"]
        assert self.principal is not None  # accepted events come after hello
        if self.principal.is_agent:
            # Unread is per reader: this agent's count, or every message of a ticket
            # the agent never read.
            unread = self.unread.get(ticket_id, ticket.get("last_seq", 0))
            if unread == ticket.get("unread"):
                self.push(event.encoded(self.codec))
            else:
                self.reply(views.ticket({**ticket, "unread": unread}))
            return
        self.follow(ticket_id, ticket.get("shop") or self.principal.shop or "", 0)
        self.reply(views.ticket(views.customer_ticket(ticket, self.unread.get(ticket_id, 0))))

    def _message(self, event: Event) -> None:
        ticket_id = event.frame["ticket"]
        follow = self.follows.get(ticket_id)
        if follow is None:  # a customer meets its shop's new ticket (see delivery.ACCEPTS)
            assert self.principal is not None
            follow = self.follow(ticket_id, self.principal.shop or "", 0)
        seq = event.frame["seq"]
        if event.origin == self.conn_id and seq > follow.cursor:
            # This connection's own message (it gets the ack, never a copy), known
            # before the ack: a gap fill that comes back first must not copy it.
            follow.own.add(seq)
        if follow.filling:
            follow.pending.append(event)
            return
        if seq <= follow.cursor:
            return
        if seq == follow.cursor + 1:
            follow.cursor = seq
            if seq in follow.own:
                follow.own.discard(seq)
            elif self._hidden(event):
                pass  # a private note: delivered to this customer as a seq it will never see
            elif event.origin != self.conn_id and not (event.held and not event.queued and self._is_agent):
                # A held follow-up reaches agents when the queue releases it; a
                # message of a ticket waiting in the queue reaches the agents
                # looking at it (following it) at once.
                self.push(event.encoded(self.codec))
                self.delivered += 1
            return
        follow.pending.append(event)
        self._want_gap(ticket_id, follow, seq)

    @property
    def _is_agent(self) -> bool:
        return self.principal is not None and self.principal.is_agent

    def _hidden(self, event: Event) -> bool:
        """A private note, and this is not support: its seq moves the cursor (the
        thread stays whole, no gap is fetched for it), nothing goes out."""
        return event.frame.get("internal") is True and not self._is_agent

    # -------------------------------------------------------------- gap fills
    def _want_gap(self, ticket_id: int, follow: Follow, upto: int | None) -> None:
        follow.filling = True
        gaps = self._gaps = self._gaps if self._gaps is not None else []
        gaps.append(Gap(ticket_id, follow.cursor, upto))
        self._shell.wake()

    def gaps(self) -> list[Gap]:
        """Fetches the shell must make (each answered by `filled` or `fill_failed`)."""
        gaps, self._gaps = self._gaps or [], None
        return gaps

    def filled(self, ticket_id: int, found: Iterable[tuple[int, bool, bytes | None]]) -> None:
        """The gap's messages, oldest first, as (seq, held, encoded frame — None for a
        message this client may not see, a private note to a customer); then what
        queued up meanwhile."""
        follow = self.follows.get(ticket_id)
        if follow is None:
            return
        for seq, held, data in found:
            if seq <= follow.cursor:
                continue
            follow.cursor = seq
            if seq in follow.own:
                follow.own.discard(seq)
            elif data is not None and not (held and self._is_agent):
                self.push(data)
                self.delivered += 1
        pending = sorted(follow.pending, key=lambda e: int(e.frame["seq"]))
        follow.pending = []
        follow.filling = False
        follow.own = {s for s in follow.own if s > follow.cursor}
        for event in pending:
            self._message(event)
        if follow.own and not follow.filling:
            # Own messages beyond the cursor whose predecessors are still in flight.
            self._want_gap(ticket_id, follow, max(follow.own))

    def fill_failed(self) -> None:
        self.close(CLOSE_TRY_AGAIN, "could not catch up; reconnect and resume")


def _count(times: deque[float], now: float, window: float) -> int:
    times.append(now)
    while times and now - times[0] > window:
        times.popleft()
    return len(times)
