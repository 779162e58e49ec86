"""A connection's outgoing side: the bounded outbox and per-ticket delivery.

Delivery is per ticket and by sequence number: each followed ticket keeps the
highest `seq` handed to the client (`cursor`). A message at `cursor + 1` goes out,
an older one is dropped as a duplicate, and a newer one means something was missed
(an event lost while Redis was away, or overtaken on another node): the gap is
filled from the database before anything newer goes out. So a client sees every
message of a followed ticket once, in order, whatever the bus does.

Backpressure: the outbox is bounded; a client that cannot keep up is closed with
1013 (it reconnects and resumes) instead of being buffered without limit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from server.auth import Principal
from server.codec import Codec
from server.errors import CLOSE_TRY_AGAIN
from server.node import INBOX, SHOP, Node, Outgoing

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Follow:
    """Delivery state of one ticket on one connection."""

    shop: str
    cursor: int
    own: set[int] = field(default_factory=set)
    filling: bool = False
    pending: list[Outgoing] = field(default_factory=list)


class Delivery:
    """Outbox and delivery state of one connection (the protocol session extends it).

    Slots and lazily made containers: thousands of idle connections should cost
    little (an empty asyncio.Event or deque alone is over half a kilobyte)."""

    __slots__ = ("node", "codec", "conn_id", "settings", "principal", "feed", "follows", "unread", "ready",
                 "_early", "_outbox", "_wake", "_drained", "on_close", "close_code", "close_reason", "_tasks")

    def __init__(self, node: Node, codec: Codec, conn_id: str) -> None:
        self.node = node
        self.codec = codec
        self.conn_id = conn_id
        self.settings = node.settings
        self.principal: Principal | None = None
        self.feed = True
        self.follows: dict[int, Follow] = {}
        self.unread: dict[int, int] = {}
        self.ready = False
        self._early: list[tuple[str, Outgoing]] | None = None
        self._outbox: list[bytes] = []
        # The writer waits on this future while the outbox is empty.
        self._wake: asyncio.Future[None] | None = None
        self._drained: asyncio.Event | None = None  # only while a long replay is paced
        self.on_close: Callable[[], object] | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self._tasks: set[asyncio.Task[None]] | None = None

    @property
    def _is_agent(self) -> bool:
        return self.principal is not None and self.principal.is_agent

    # ---------------------------------------------------------------- outbox
    def send(self, frame: dict[str, Any], ref: object = None) -> None:
        if ref is not None:
            frame = {**frame, "ref": ref}
        self.enqueue(self.codec.encode(frame))

    def enqueue(self, data: bytes) -> None:
        if self.close_code is not None:
            return
        if len(self._outbox) >= self.settings.send_queue_max:
            # A client that cannot keep up is closed, never buffered without limit;
            # it reconnects and resumes from its last seq.
            log.warning("ws.too_slow", extra={"conn_id": self.conn_id})
            self.close(CLOSE_TRY_AGAIN, "too slow to keep up; reconnect and resume")
            return
        self._outbox.append(data)
        self._signal()

    def _signal(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def enqueue_paced(self, data: bytes) -> None:
        """Enqueue a frame of a long replay, waiting for the writer instead of
        overflowing the outbox (a replay is bounded work the client asked for)."""
        while len(self._outbox) >= self.settings.send_queue_max // 2 and self.close_code is None:
            self._drained = self._drained or asyncio.Event()
            self._drained.clear()
            await self._drained.wait()
        self.enqueue(data)

    def close(self, code: int, reason: str = "") -> None:
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
            self._signal()
            if self._drained is not None:
                self._drained.set()
            if self.on_close is not None:
                self.on_close()

    async def next_outgoing(self) -> list[bytes] | None:
        """Frames to write (None once the session is to be closed)."""
        while True:
            # Pending frames go out before the close (the error that explains it), except
            # for a client too slow to take them anyway.
            if self.close_code is not None and (self.close_code == CLOSE_TRY_AGAIN or not self._outbox):
                return None
            if self._outbox:
                batch, self._outbox = self._outbox, []
                if self._drained is not None:
                    self._drained.set()
                return batch
            self._wake = asyncio.get_running_loop().create_future()
            try:
                await self._wake
            finally:
                self._wake = None

    # -------------------------------------------------------------- delivery
    def deliver(self, source: str, out: Outgoing) -> None:
        """An event from the bus (local or another node) that may concern this session."""
        if not self.ready:
            early = self._early = self._early if self._early is not None else []
            if len(early) >= self.settings.send_queue_max:
                self.close(CLOSE_TRY_AGAIN, "too slow to keep up; reconnect and resume")
            else:
                early.append((source, out))
            return
        principal = self.principal
        if principal is None:
            return
        kind = out.kind
        if kind == "message":
            ticket_id = out.frame["ticket"]
            follow = self.follows.get(ticket_id)
            if follow is None:
                if principal.is_agent or source != SHOP:
                    return
                # A ticket of this shop opened elsewhere, met first through a message.
                follow = self.follows[ticket_id] = Follow(principal.shop or "", 0)
            self._on_message(ticket_id, follow, out)
        elif kind == "ticket":
            if out.origin == self.conn_id:
                return
            ticket = out.frame["ticket"]
            ticket_id = ticket["id"]
            if principal.is_agent:
                if source == INBOX or (not self.feed and source == SHOP and ticket_id in self.follows):
                    # Unread is per reader: this agent's count, or every message of a
                    # ticket the agent never read.
                    unread = self.unread.get(ticket_id, ticket.get("last_seq", 0))
                    if unread == ticket.get("unread"):
                        self.enqueue(out.encoded(self.codec))
                    else:
                        self.send({"type": "ticket", "ticket": {**ticket, "unread": unread}})
                return
            if source != SHOP:
                return
            if ticket_id not in self.follows:
                self.follows[ticket_id] = Follow(ticket.get("shop") or principal.shop or "", 0)
            self.send({"type": "ticket", "ticket": for_customer(ticket, self.unread.get(ticket_id, 0))})
        elif kind == "typing":
            if out.origin == self.conn_id or out.frame["ticket"] not in self.follows:
                return
            if out.extra.get("side") != principal.role.value:
                self.enqueue(out.encoded(self.codec))
        elif kind == "unread":
            for key, value in out.frame["tickets"].items():
                self.unread[int(key)] = value
            if out.origin == self.conn_id and "ref" in out.extra:
                self.send(out.frame, out.extra["ref"])  # the reply to this connection's `read`
            else:
                self.enqueue(out.encoded(self.codec))
        elif kind == "release":
            # A message held for working hours reaches the agents following its ticket.
            if principal.is_agent and out.frame["ticket"] in self.follows:
                self.enqueue(out.encoded(self.codec))
        elif kind == "presence":
            if principal.is_agent or "agents_online" in out.frame:
                self.enqueue(out.encoded(self.codec))
        elif kind == "customer_presence" and principal.is_agent:
            shop = out.frame["shop"]
            if (source == INBOX and self.feed) or (
                    source == SHOP and not self.feed and any(f.shop == shop for f in self.follows.values())):
                self.enqueue(out.encoded(self.codec))

    def _on_message(self, ticket_id: int, follow: Follow, out: Outgoing) -> None:
        seq = out.frame["seq"]
        if follow.filling:
            follow.pending.append(out)
            return
        if seq <= follow.cursor:
            return
        if seq == follow.cursor + 1:
            follow.cursor = seq
            if seq in follow.own:
                follow.own.discard(seq)
            elif out.origin != self.conn_id and not (out.extra.get("held") and self._is_agent):
                self.enqueue(out.encoded(self.codec))
            return
        follow.filling = True
        follow.pending.append(out)
        self._spawn(self._fill(ticket_id, follow, seq))

    def _own(self, ticket_id: int, follow: Follow, seq: int) -> None:
        """This connection sent `seq`: it got an ack, not a copy."""
        if follow.filling or seq > follow.cursor + 1:
            follow.own.add(seq)
            if not follow.filling:
                follow.filling = True
                self._spawn(self._fill(ticket_id, follow, seq))
        elif seq == follow.cursor + 1:
            follow.cursor = seq

    async def _fill(self, ticket_id: int, follow: Follow, upto: int | None) -> None:
        """Fetch the gap (cursor, upto] from the database, then what queued up meanwhile."""
        attempt = 0
        while True:
            try:
                if upto is None:
                    missed, _ = await self.node.store.history(ticket_id, after_seq=follow.cursor,
                                                              limit=self.settings.resume_max)
                else:
                    missed = await self.node.store.between(ticket_id, follow.cursor, upto)
                missed = await self.node.with_attachments(missed)
                break
            except (OperationalError, DBAPIError, PoolTimeout, OSError):
                attempt += 1
                if attempt >= 5:
                    log.error("ws.fill_failed", extra={"conn_id": self.conn_id, "ticket_id": ticket_id})
                    self.close(CLOSE_TRY_AGAIN, "could not catch up; reconnect and resume")
                    return
                await asyncio.sleep(0.2 * 2**attempt)  # retry backoff, not synchronization
        for message in missed:
            if message.seq <= follow.cursor:
                continue
            follow.cursor = message.seq
            if message.seq in follow.own:
                follow.own.discard(message.seq)
            elif not (self._is_agent and self.node.is_held(message)):
                self.enqueue(self.codec.encode(message.frame()))
        pending = sorted(follow.pending, key=lambda o: o.frame["seq"])
        follow.pending = []
        follow.filling = False
        follow.own = {s for s in follow.own if s > follow.cursor}
        for out in pending:
            self._on_message(ticket_id, follow, out)
        if follow.own and not follow.filling:
            # Own messages beyond the cursor whose predecessors are still in flight.
            follow.filling = True
            self._spawn(self._fill(ticket_id, follow, max(follow.own)))

    async def catch_up(self) -> None:
        """Redis came back: fetch whatever was published while it was away."""
        for ticket_id, follow in list(self.follows.items()):
            if not follow.filling:
                follow.filling = True
                self._spawn(self._fill(ticket_id, follow, None))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        if self._tasks is None:
            self._tasks = set()
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if self._tasks is not None:
            self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("ws.task_failed", extra={"conn_id": self.conn_id}, exc_info=task.exception())
            self.close(CLOSE_TRY_AGAIN, "internal error; reconnect and resume")


def for_customer(ticket: dict[str, Any], unread: int) -> dict[str, Any]:
    out = {k: v for k, v in ticket.items()
           if k not in ("context", "created_by", "plan", "shop_name", "customer_online", "shop_record",
                        "claimed_severity", "deprioritized", "reminders_sent", "waiting_since")}
    out["unread"] = unread
    return out


# ------------------------------------------------------------------ endpoint
