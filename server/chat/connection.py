"""One connection's I/O glue around its sans-I/O session, and this node's roster.

`Connection` carries out what the session (`server.protocol.session`) asks for,
except touching the socket (that is `server.ws`): it wakes the socket writer when
there is something to send, fetches the gaps the session wants from the database,
paces long replays, bounds the sends waiting for their commit, subscribes the
channels the connection listens on and, at the end, undoes it all. `Roster` is every
connection on this node (for the heartbeat, a drain, the connection budgets).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from server.errors import CLOSE_TRY_AGAIN, PomocError
from server.logs import Tally
from server.protocol import views
from server.protocol.codec import Codec
from server.protocol.delivery import Gap
from server.protocol.events import Source
from server.protocol.session import Session
from server.rules.records import Message
from server.store.db import DATABASE_DOWN, Pulse

if TYPE_CHECKING:
    from server.chat.adapters import Adapters

log = logging.getLogger(__name__)
T = TypeVar("T")


class Overdue(TimeoutError):
    """A dependency did not answer in time (the work was abandoned to unwind); one of
    DATABASE_DOWN, as every TimeoutError is an OSError."""


MAX_SENDS_IN_FLIGHT = 64
FILL_ATTEMPTS = 5


class Connection:
    __slots__ = ("a", "session", "_wakeup", "_drained", "_reader", "_tasks", "_sends")

    def __init__(self, a: Adapters, conn_id: str, codec: Codec) -> None:
        self.a = a
        self.session = Session(conn_id, codec, a.session_config, self)
        self._wakeup: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None  # only while a long replay is paced
        self._reader: asyncio.Task[Any] | None = None  # the task waiting for the client's next frame
        # Rarely needed: made on first use (an idle connection stays small).
        self._tasks: set[asyncio.Task[None]] | None = None
        self._sends: list[asyncio.Task[None]] | None = None

    def wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)
        if self.session.close_code is not None:
            drained = self._drained
            if drained is not None and not drained.done():
                drained.set_result(None)
            reader = self._reader
            if reader is not None:
                # Closing: stop waiting for a client that may never send again.
                self._reader = None
                reader.cancel()

    # --------------------------------------------------------------- reading
    def waiting(self, reader: asyncio.Task[Any] | None) -> None:
        """The task now waiting for the client's next frame (None: not waiting): a
        close cancels it, so the endpoint never waits for a client that may never
        send again."""
        self._reader = reader

    def failed(self, err: PomocError, ref: object) -> None:
        """A request failed: the client hears why; a client closed for abuse cools down."""
        if self.session.fail(err, ref, asyncio.get_running_loop().time()):
            principal = self.session.principal
            if principal is not None:
                # Outlives this connection: the cool-down is the point.
                self.spawn(self.a.attendance.penalize(principal), detached=True)

    # --------------------------------------------------------------- writing
    async def outgoing(self) -> list[bytes] | None:
        """Frames for the socket writer (None once the connection is to be closed)."""
        session = self.session
        while True:
            for gap in session.gaps():
                self.spawn(self._fill(gap))
            batch = session.data_to_send()
            if batch:
                drained = self._drained
                if drained is not None and not drained.done():
                    drained.set_result(None)
                return batch
            if session.close_code is not None:
                return None
            self._wakeup = asyncio.get_running_loop().create_future()
            try:
                await self._wakeup
            finally:
                self._wakeup = None

    async def room(self) -> None:
        """Wait until the outbox is half empty (a long replay is bounded work the
        client asked for: paced, never overflowing)."""
        limit = self.session.config.send_queue_max // 2
        while self.session.queued >= limit and self.session.close_code is None:
            self._drained = asyncio.get_running_loop().create_future()
            try:
                await self._drained
            finally:
                self._drained = None

    async def flushed(self) -> None:
        """Wait until the socket writer has taken everything queued (a replay reads its
        next page from the database only then: one page in the outbox, one being
        written, whatever was missed)."""
        while self.session.queued and self.session.close_code is None:
            self._drained = asyncio.get_running_loop().create_future()
            try:
                await self._drained
            finally:
                self._drained = None

    async def bounded(self, work: Coroutine[Any, Any, T], seconds: float, pulse: Pulse) -> T:
        """`work`'s result, unless the database stays silent for `seconds` (`pulse`:
        no statement of this node answered) before it is done: then it is cancelled
        and left to unwind on its own (its database calls are bounded too) while this
        raises `Overdue` at once. A hung database costs the client `seconds`, not
        however long the unwinding takes; a busy node that is still being answered
        finishes the work."""
        task = asyncio.ensure_future(work)
        started = time.monotonic()
        try:
            while not task.done():
                left = seconds - pulse.silent_for(started)
                if left <= 0:
                    break
                await asyncio.wait({task}, timeout=left)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task.done():
            return task.result()
        task.cancel()
        task.add_done_callback(_unwound)
        self.a.roster.keep(task)
        raise Overdue(f"the database did not answer for {seconds:g} s")

    # ------------------------------------------------------------- channels
    async def listen(self, channels: Iterable[tuple[str, Source]]) -> None:
        """Listen on these channels (subscribing new ones all at once: one round trip)."""
        session = self.session
        new = [(c, s) for c, s in dict(channels).items() if c not in session.channels]
        if not new:
            return
        session.channels += tuple(c for c, _ in new)
        for channel, source in new:
            self.a.router.listen(session, channel, source)
        # Returns when Redis confirmed each channel (whoever asked first), so nothing
        # published after this returns is missed.
        await self.a.bus.subscribe(*(c for c, _ in new))

    def unlisten(self) -> None:
        session = self.session
        for channel in self.a.router.forget(session, session.channels):
            self.a.bus.unsubscribe(channel)
        session.channels = ()

    # ---------------------------------------------------------------- tasks
    def spawn(self, coro: Coroutine[Any, Any, None], *, detached: bool = False) -> None:
        """Run a task for this connection (cancelled with it unless `detached`)."""
        task = asyncio.ensure_future(coro)
        if detached:
            self.a.roster.keep(task)
            return
        if self._tasks is None:
            self._tasks = set()
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if self._tasks is not None:
            self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("ws.task_failed", extra={"conn_id": self.session.conn_id}, exc_info=task.exception())
            self.session.fill_failed()

    async def track_send(self, completion: Coroutine[Any, Any, None]) -> None:
        """A send waiting for its commit; at most MAX_SENDS_IN_FLIGHT per connection."""
        while self._sends and len(self._sends) >= MAX_SENDS_IN_FLIGHT:
            await asyncio.wait({self._sends[0]})
        task = asyncio.ensure_future(completion)
        if self._sends is None:
            self._sends = []
        self._sends.append(task)
        task.add_done_callback(self._send_done)

    def _send_done(self, task: asyncio.Task[None]) -> None:
        if self._sends and task in self._sends:
            self._sends.remove(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("ws.send_failed", extra={"conn_id": self.session.conn_id}, exc_info=task.exception())

    # -------------------------------------------------------------- gap fill
    async def _fill(self, gap: Gap) -> None:
        """Fetch the gap from the database and hand it to the session."""
        a, session = self.a, self.session
        for attempt in range(1, FILL_ATTEMPTS + 1):
            try:
                if gap.upto is None:
                    found, _ = await a.messages.history(gap.ticket, after_seq=gap.after,
                                                        limit=a.settings.resume_max)
                else:
                    found = await a.messages.between(gap.ticket, gap.after, gap.upto)
                found = await with_links(a, found)
                break
            except DATABASE_DOWN:
                if attempt == FILL_ATTEMPTS:
                    log.error("ws.fill_failed", extra={"conn_id": session.conn_id, "ticket_id": gap.ticket})
                    session.fill_failed()
                    return
                await asyncio.sleep(0.2 * 2**attempt)  # retry backoff, not synchronization
        now = a.clock.now()
        held = {m.seq for m in found if m.held_at(now)}
        if held and session.principal is not None and session.principal.is_agent:
            # Agents looking at a ticket that waits in the queue see its messages at once.
            with contextlib.suppress(*DATABASE_DOWN, PomocError):
                ticket = await a.tickets.get(gap.ticket)
                if ticket.queued_until is not None and ticket.queued_until > now:
                    held = set()
        codec, principal = session.codec, session.principal
        # A private note fills a customer's gap as a seq it never sees.
        session.filled(gap.ticket, [(m.seq, m.seq in held, codec.encode(views.message(m))
                                     if principal is not None and m.visible_to(principal) else None)
                                    for m in found])

    # ------------------------------------------------------------------ end
    async def finish(self) -> None:
        for task in list(self._tasks or ()):
            task.cancel()
        self.unlisten()
        self.a.roster.discard(self)
        await self.a.collision.closed(self.session, self.session.viewing())
        await self.a.attendance.disconnected(self.session)


async def with_links(a: Adapters, found: list[Message]) -> list[Message]:
    """Messages read back from the database, with their attachments (fresh links)."""
    # Signed links expire on real time, like the tokens they stand in for.
    return await a.attachments.with_links(found, a.wall.now())


def _unwound(task: asyncio.Future[Any]) -> None:
    # Abandoned work that failed while unwinding: its error was answered already.
    if not task.cancelled() and task.exception() is not None:
        log.debug("ws.abandoned_failed", extra={"error": repr(task.exception())})


EVICTION_LOOKAHEAD = 32  # pending connections looked at for a silent one to close


def _silent() -> bool:
    return False


class Roster:
    """Every connection on this node, and the short tasks that outlive theirs.

    A connection is *pending* from its admission until its hello's token is
    accepted (`identified`). Pending connections have budgets of their own, so that
    sockets which never say hello cannot keep real users out: per client address
    (`max_pending_per_address`; a new socket beyond it is refused before the upgrade)
    and per node (`max_pending`; beyond it, or when the node is full, the oldest
    pending connection is closed with 1013 to make room: the oldest of those that have
    sent nothing since the upgrade, when the edge can tell (`heard`), so a flood of
    silent sockets cannot push out a real user whose hello is still being read).
    Only a node full of identified connections refuses everyone."""

    def __init__(self, max_connections: int, max_pending: int | None = None,
                 max_pending_per_address: int | None = None, hello_concurrency: int = 32) -> None:
        self.max_connections = max_connections
        # The node's admission queue: hellos worked on at once, up to their welcome.
        self.hellos = asyncio.Semaphore(hello_concurrency)
        self.max_pending = max_pending or max_connections
        self.max_pending_per_address = max_pending_per_address or self.max_pending
        self.draining = False
        self._connections: set[Connection] = set()
        # In order of admission, the oldest first: the client's address, and whether it has sent anything.
        self._pending: dict[Connection, tuple[str, Callable[[], bool]]] = {}
        self._per_address: Counter[str] = Counter()
        self._evicted: set[Connection] = set()  # closing to make room; no longer counted
        self._pressure = Tally(log, "ws.pending_pressure")
        self._all_closed = asyncio.Event()
        self._detached: set[asyncio.Future[Any]] = set()
        self._delivered_closed = 0  # messages delivered to connections that are gone

    def __len__(self) -> int:
        return len(self._connections)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def admit(self, connection: Connection, address: str, heard: Callable[[], bool] = _silent) -> str | None:
        """Count a new connection in as pending, making room by closing the oldest
        silent pending one if needed; or why it is refused. `heard` tells whether the
        client has sent anything yet."""
        if self._per_address[address] >= self.max_pending_per_address:
            self._pressure.add("refused_address")
            return "too many connections from this address have not said hello yet; retry"
        while self._pending and (len(self._pending) >= self.max_pending or self._live() >= self.max_connections):
            self._evict_oldest()
        if self._live() >= self.max_connections:
            self._pressure.add("refused_full")
            return "this server is full; retry (possibly another node)"
        self._connections.add(connection)
        self._pending[connection] = (address, heard)
        self._per_address[address] += 1
        return None

    def identified(self, connection: Connection) -> None:
        """The connection's hello carried a valid token: it is pending no more."""
        self._unpend(connection)

    def discard(self, connection: Connection) -> None:
        if connection in self._connections:
            self._delivered_closed += connection.session.delivered
        self._unpend(connection)
        self._evicted.discard(connection)
        self._connections.discard(connection)
        if not self._connections:
            self._all_closed.set()

    def _live(self) -> int:
        return len(self._connections) - len(self._evicted)

    def _unpend(self, connection: Connection) -> None:
        entry = self._pending.pop(connection, None)
        if entry is not None:
            address = entry[0]
            left = self._per_address[address] - 1
            if left:
                self._per_address[address] = left
            else:
                del self._per_address[address]

    def _evict_oldest(self) -> None:
        # Walks past the connections whose hello is on its way, but only so far: a
        # client that sends a partial frame and stalls is "heard" too, and a walk over
        # every pending connection per admission would make a flood of those costly.
        oldest = next((c for c, (_, heard) in itertools.islice(self._pending.items(), EVICTION_LOOKAHEAD)
                       if not heard()), None)
        if oldest is None:
            oldest = next(iter(self._pending))
        self._unpend(oldest)
        self._evicted.add(oldest)
        self._pressure.add("evicted")
        oldest.session.close(CLOSE_TRY_AGAIN, "too many connections waiting for hello; retry")

    def by_role(self) -> dict[str, int]:
        """Open connections by role, and those not identified yet (read at scrape time)."""
        counts = {"customer": 0, "agent": 0, "pending": len(self._pending)}
        for connection in self._connections:
            principal = connection.session.principal
            if principal is not None and connection not in self._pending:
                counts[principal.role.value] = counts.get(principal.role.value, 0) + 1
        return counts

    def delivered(self) -> int:
        """Messages delivered to this node's connections so far (read at scrape time)."""
        return self._delivered_closed + sum(c.session.delivered for c in self._connections)

    def sessions(self) -> list[Session]:
        return [c.session for c in self._connections]

    def keep(self, task: asyncio.Future[Any]) -> None:
        self._detached.add(task)
        task.add_done_callback(self._detached.discard)

    async def drain(self, grace: float = 5.0) -> None:
        """Going away: close every connection with 1001 so clients reconnect elsewhere."""
        self.draining = True
        for connection in tuple(self._connections):
            connection.session.close(1001, "server going away; reconnect and resume")
        if self._connections:
            self._all_closed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_closed.wait(), grace)
