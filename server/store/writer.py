"""Group commit: concurrent sends stored together, each acknowledged only after commit.

Every connection's `send` goes to the node's writer and waits. The writer takes all
sends that are waiting and stores them together: it gives the sends consecutive seqs
after each ticket's `last_seq` and stores the messages and the tickets' counters in
one statement. Two ways (`server.store.commit_sql`):

- believed (the default): the writer decides the batch from what it believes the
  tickets' rows hold (`server.store.beliefs`: what its last store wrote, or a plain
  read the first time) and sends one statement in autocommit, which locks the tickets
  (in id order, so writers on several nodes never deadlock) and stores into those
  whose rows still hold exactly that. Sends into a ticket that changed meanwhile
  (another node's messages, a status change) are decided again from the row the
  statement returned. At rest a send costs one round trip and the commit's flush.
- locked: a transaction locks the tickets, decides, stores, commits. Used for the
  rest of a batch whose beliefs were wrong twice, and for a batch with a repeat.

A retried send (same author and client id) is answered with the stored seq: the
believed statement aborts on the unique key (nothing stored), and the batch is redone
the locked way knowing the repeats, whose insert skips them, so no seq is ever
skipped. While one batch is being committed the next one gathers, so under load a
commit carries many messages and at rest a message waits for nothing. "Acked means
committed" holds for every message.

Sends that need more than that — attachments, a customer reply that reopens the
ticket — and every send on SQLite (one writer at a time anyway) go through
`MessageStore.post` one by one, which keeps the same guarantees. Every way admits a
send by the same rule (`server.rules.tickets.admit_post`).

Whatever the writer stores it hands, once committed, to `on_commit` (the announce
path, `server.chat.announce`): a whole batch at once, so that telling everyone
about it costs one call to Redis however many messages it holds.

What a failure costs. A row the database refuses (`server.store.db.refused`: NUL in
PostgreSQL text, a string that is not valid Unicode) fails its batch; the batch is
then stored again one send at a time, so only the guilty sender hears an error
(`bad_request`: it can never be stored) and every other send commits. A database
that is down fails the batch's senders at once with `unavailable`; one that hangs
does too, once it has been silent for `timeout` seconds (the `pulse`: no statement
of this node answered), even while a commit is stuck: the stuck work unwinds on its
own (the engine bounds every statement). A send that waits behind a busy node's
other work while the database answers is not failed. A send answered `unavailable`
may still have been committed (a COMMIT whose answer was lost, a stuck batch that
went through): it is announced when that becomes known, and the client's retry with
the same `client_id` is answered with the stored seq.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from server.errors import BadRequest, PomocError, Unavailable
from server.metrics import Metrics
from server.principal import Principal
from server.rules.deadlines import Running, after_message, answered
from server.rules.records import Author, Committed, Message, Posted
from server.rules.tickets import (
    Admission,
    ClosedUntil,
    Hold,
    StartClock,
    ThreadState,
    admit_post,
    may_be_stale,
    stale_reply,
)
from server.store import commit_sql as sql
from server.store.beliefs import TicketBeliefs, after_store, checked, from_record
from server.store.db import DATABASE_DOWN, Pulse, describe, error_kind, refused
from server.store.messages import MessageStore
from server.store.rows import AttachFn, WorkingSeconds

log = logging.getLogger(__name__)
# Sends whose outcome a failure left unknown, remembered so that a retry found
# stored is announced (at most this many: the newest).
UNCERTAIN_MAX = 10_000
# Tickets whose rows a node keeps believing, and how often a batch is decided again
# from the rows it found before the rest goes the locked way.
DEFAULT_BELIEFS = 4096
BELIEF_ATTEMPTS = 2
REFUSED_TEXT = "the database refused this message (e.g. a character it cannot store); it was not stored"

# Tells everyone about committed messages (the announce path).
OnCommit = Callable[[list[Committed]], Awaitable[None]]

class _Retried(Exception):
    """A send in the batch repeats a stored one: redo the batch knowing which."""


@dataclass(slots=True)
class Pending:
    principal: Principal
    ticket_id: int
    body: str
    client_id: str
    now: datetime
    origin: str | None = None
    internal: bool = False  # an agent's private note
    seen_seq: int | None = None  # an agent's send checked for other agents' newer replies
    done: asyncio.Future[Posted] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    # Set inside the transaction, handed to the sender only after the commit.
    result: Posted | None = None
    # Answers `unavailable` once the database has been silent too long.
    expiry: asyncio.TimerHandle | None = None
    submitted_at: float = field(default_factory=time.monotonic)

    @property
    def key(self) -> tuple[int, str, str, str]:
        return (self.ticket_id, self.principal.role.value, self.principal.id, self.client_id)


class MessageWriter:
    def __init__(self, store: MessageStore, hold: Hold, closed_until: ClosedUntil, on_commit: OnCommit,
                 max_batch: int = 500, concurrency: int = 1, timeout: float = 5.0,
                 pulse: Pulse | None = None, metrics: Metrics | None = None, *, start: StartClock,
                 seconds: WorkingSeconds | None = None, beliefs: int = DEFAULT_BELIEFS) -> None:
        self.timeout = timeout
        # One observation per commit (its size and latency), never per message.
        self.metrics = metrics or Metrics()
        # The next-response clock a customer's message starts (the policy's).
        self.start = start
        # The policy's working time: times agents' answers for the reports (None: not timed).
        self.seconds = seconds
        # Beats whenever the database answers (the writer's own commits included).
        self.pulse = pulse or Pulse()
        self.closed_until = closed_until
        self.store = store
        self.concurrency = concurrency
        self.on_commit = on_commit
        self.engine: AsyncEngine = store.engine
        self.hold = hold
        self.max_batch = max_batch
        self.batched = self.engine.dialect.name == "postgresql"
        # What the node last saw of its tickets (0: every batch locks its tickets first).
        self.beliefs = TicketBeliefs(beliefs) if beliefs > 0 else None
        # Tickets whose rows did not hold what was believed (each cost a statement more).
        self.stale = 0
        self._waiting: list[Pending] = []
        self._wakeup = asyncio.Event()
        self.batches = 0
        self.messages = 0
        self._uncertain: OrderedDict[tuple[int, str, str, str], None] = OrderedDict()

    async def post(self, principal: Principal, ticket_id: int, body: str, client_id: str, now: datetime,
                   attachments: tuple[str, ...] = (), attach: AttachFn | None = None,
                   origin: str | None = None, internal: bool = False, seen_seq: int | None = None) -> Posted:
        """Store a send and tell everyone; returns once it is committed."""
        if not self.batched or attachments:
            key = (ticket_id, principal.role.value, principal.id, client_id)
            try:
                posted = await self._post_one(principal, ticket_id, body, client_id, now, attachments, attach,
                                              internal=internal, seen_seq=seen_seq)
            except PomocError:
                raise
            except Exception as exc:
                if refused(exc):
                    log.warning("writer.refused", extra={"ticket_id": ticket_id, "error": describe(exc)})
                    raise BadRequest(REFUSED_TEXT) from exc
                self._doubt(key)  # the commit may have happened: a retry found stored is announced
                raise
            posted = self._settled(key, posted)
            await self._announce([(posted, origin, principal.key)])
            return posted
        return await self.submit(principal, ticket_id, body, client_id, now, origin, internal=internal,
                                 seen_seq=seen_seq)

    async def _post_one(self, principal: Principal, ticket_id: int, body: str, client_id: str, now: datetime,
                        attachments: tuple[str, ...] = (), attach: AttachFn | None = None, *,
                        internal: bool = False, seen_seq: int | None = None) -> Posted:
        """One send in its own transaction (`MessageStore.post`), timed as a commit of one."""
        started = time.perf_counter()
        posted = await self.store.post(principal, ticket_id, body, client_id, now, self.hold, self.closed_until,
                                       self.start, attachments=attachments, attach=attach, internal=internal,
                                       seen_seq=seen_seq, seconds=self.seconds)
        self.metrics.committed("single", 1, time.perf_counter() - started)
        return posted

    def submit(self, principal: Principal, ticket_id: int, body: str, client_id: str,
               now: datetime, origin: str | None = None, *, internal: bool = False,
               seen_seq: int | None = None) -> asyncio.Future[Posted]:
        """Queue a send (batched writers only); the future resolves after its commit,
        and the message is announced with its batch."""
        pending = Pending(principal, ticket_id, body, client_id, now, origin, internal, seen_seq)
        pending.expiry = asyncio.get_running_loop().call_later(self.timeout, self._expire, pending)
        pending.done.add_done_callback(_stop_expiry(pending))
        self._waiting.append(pending)
        self._wakeup.set()
        return pending.done

    def _expire(self, pending: Pending) -> None:
        """Not committed while the database stayed silent for `timeout`: the sender
        hears `unavailable` (and may retry with the same client_id); if its batch
        commits after all, the message is announced. A send merely queued behind a
        busy node's other work (the database answering meanwhile) waits on."""
        if pending.done.done():
            return
        silent = self.pulse.silent_for(pending.submitted_at)
        if silent < self.timeout:
            pending.expiry = asyncio.get_running_loop().call_later(self.timeout - silent, self._expire, pending)
            return
        self._doubt(pending.key)
        pending.done.set_exception(Unavailable(f"the database did not answer within {self.timeout:g} s; retry"))

    def _doubt(self, key: tuple[int, str, str, str]) -> None:
        self._uncertain[key] = None
        self._uncertain.move_to_end(key)
        while len(self._uncertain) > UNCERTAIN_MAX:
            self._uncertain.popitem(last=False)

    def _settled(self, key: tuple[int, str, str, str], posted: Posted) -> Posted:
        """A send answered now: a repeat of one whose outcome was unknown is news to
        everyone but the database (its first attempt was never announced)."""
        if key in self._uncertain:
            del self._uncertain[key]
            if not posted.new:
                return replace(posted, new=True)
        return posted

    async def run(self) -> None:
        """The writer loop (one per node); runs until cancelled.

        Up to `concurrency` batches are in flight at once, but a ticket is never in
        two of them: sends into one ticket commit in the order they arrived."""
        slots = asyncio.Semaphore(self.concurrency)
        busy: set[int] = set()
        flights: set[asyncio.Task[None]] = set()
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while self._waiting:
                    await slots.acquire()
                    # Sends that ran out of time while waiting were answered already.
                    self._waiting = [p for p in self._waiting if not p.done.done()]
                    batch: list[Pending] = []
                    rest: list[Pending] = []
                    held = set(busy)
                    for pending in self._waiting:
                        if pending.ticket_id in held or len(batch) >= self.max_batch:
                            held.add(pending.ticket_id)  # later sends of that ticket wait their turn
                            rest.append(pending)
                        else:
                            batch.append(pending)
                    self._waiting = rest
                    if not batch:
                        slots.release()
                        break  # everything waits on a ticket in flight; its batch wakes us
                    tickets = {p.ticket_id for p in batch}
                    busy.update(tickets)
                    flight = asyncio.ensure_future(self._fly(batch))
                    flights.add(flight)
                    flight.add_done_callback(self._on_landing(tickets, busy, slots, flights))
        finally:
            for flight in flights:
                flight.cancel()

    def _on_landing(self, tickets: set[int], busy: set[int], slots: asyncio.Semaphore,
                    flights: set[asyncio.Task[None]]) -> Callable[[asyncio.Future[None]], None]:
        def landed(flight: asyncio.Future[None]) -> None:
            busy.difference_update(tickets)
            slots.release()
            flights.discard(flight)
            if self._waiting:
                self._wakeup.set()

        return landed

    async def _fly(self, batch: list[Pending]) -> None:
        try:
            try:
                await self._write(batch)
            except _Retried:
                # Rare (a client retried a send that was already stored): the whole
                # transaction rolled back; this time look the repeats up first.
                again = [p for p in batch if not p.done.done()]
                for pending in again:
                    pending.result = None
                await self._write(again, look_up_repeats=True)
        except asyncio.CancelledError:
            for pending in batch:
                if not pending.done.done():
                    pending.done.cancel()
            raise
        except Exception as exc:
            # The group commit runs on the driver's own connection, past the engine's error events.
            self.metrics.database_failed("group_commit", error_kind(exc))
            retry = [p for p in batch if not p.done.done()]
            for pending in retry:
                pending.result = None
            if refused(exc):
                # One row the database will not take: find it by storing one at a
                # time, so that nobody else's send fails with it.
                log.warning("writer.batch_refused", extra={"size": len(batch), "error": describe(exc)})
                await self._one_by_one(retry)
            elif _down(exc):
                # Down or hung: one by one would only wait `timeout` per send. The
                # outcome of a COMMIT that failed this way is unknown.
                log.warning("writer.batch_failed", extra={"size": len(batch), "error": describe(exc)})
                for pending in retry:  # (those that ran out of time are in doubt already)
                    self._doubt(pending.key)
                    _fail(pending, Unavailable("the database is unavailable; retry"))
            else:
                log.exception("writer.batch_failed", extra={"size": len(batch)})
                await self._one_by_one(retry)

    async def _one_by_one(self, batch: list[Pending]) -> None:
        for index, pending in enumerate(batch):
            if pending.done.done():
                continue  # ran out of time meanwhile: answered already
            try:
                posted = await self._post_one(pending.principal, pending.ticket_id, pending.body,
                                              pending.client_id, pending.now, internal=pending.internal,
                                              seen_seq=pending.seen_seq)
            except PomocError as exc:
                _fail(pending, exc)
            except Exception as exc:
                if refused(exc):
                    log.warning("writer.refused", extra={"ticket_id": pending.ticket_id, "error": describe(exc)})
                    _fail(pending, BadRequest(REFUSED_TEXT))
                    continue
                if not _down(exc):  # a bug: this send fails, the others are tried
                    log.exception("writer.post_failed", extra={"ticket_id": pending.ticket_id})
                    self._doubt(pending.key)
                    _fail(pending, Unavailable("internal error; retry"))
                    continue
                # The database is down: every waiting sender hears it now.
                log.warning("writer.batch_failed", extra={"size": len(batch) - index, "error": describe(exc)})
                for rest in batch[index:]:
                    self._doubt(rest.key)
                    _fail(rest, Unavailable("the database is unavailable; retry"))
                return
            else:
                posted = self._settled(pending.key, posted)
                _resolve(pending, posted)
                await self._announce([(posted, pending.origin, pending.principal.key)])

    async def _announce(self, stored: list[tuple[Posted, str | None, str]]) -> None:
        """Stored and acked: everyone else hears of it (other nodes catch up from the
        database if this fails)."""
        items: list[Committed] = []
        for posted, origin, author in stored:
            if not posted.new:
                continue
            items.append(Committed(posted.shop_id, posted.message, origin, author, ticket_changed=posted.ticket_changed,
                                   ticket_queued=posted.ticket_queued))
            items.extend(Committed(posted.shop_id, note, None, "system") for note in posted.notes)
            items.extend(Committed(posted.shop_id, m, None, m.author.key(posted.shop_id), audience="agents",
                                   released=True) for m in posted.released)
        if not items:
            return
        try:
            await self.on_commit(items)
        except Exception:
            log.exception("writer.announce_failed", extra={"size": len(items)})

    def _clocks(self, tickets: dict[int, Any], fresh: list[tuple[Pending, Message]]) -> dict[int, Running]:
        """Each ticket's reaction clock after the batch's messages, in commit order
        (`server.rules.deadlines`), for the tickets where it changes. From the rows the
        lock read: no statement of its own; the calendar runs only for a customer
        message that starts a clock."""
        clocks: dict[int, Running] = {}
        for _, message in fresh:
            if message.internal:
                continue  # a private note is no answer: the customer's clock runs on
            row = tickets[message.ticket]
            current = clocks.get(message.ticket) or Running(row["sla_due_at"], None, None)

            def start(started: datetime, row: Any = row) -> Running:
                return self.start(row["severity"], row["plan"], started)

            moved = after_message(current, message.author.kind, False, message.created_at, start)
            if moved is not None:
                clocks[message.ticket] = moved
        return clocks

    def _facts(self, tickets: dict[int, Any], fresh: list[tuple[Pending, Message]], bumped: list[int]
               ) -> tuple[list[Any], ...]:
        """What the batch's agent answers record for the reports, per bumped ticket: the
        first responder and the first response's working seconds (None where it is not
        in this batch), and the next-response steps answered (count, working seconds,
        how many late). From the rows the lock read, in commit order: no statement of
        its own; the calendar runs once per answer that stops a clock."""
        first: dict[int, tuple[str, int]] = {}
        steps: dict[int, list[int]] = {}
        state = {t: (r["first_response_at"], r["sla_due_at"], r["sla_started_at"]) for t, r in tickets.items()}
        for pending, message in fresh:
            if message.internal or self.seconds is None:
                continue
            row = tickets[message.ticket]
            responded, due, started = state[message.ticket]
            if message.author.kind == "customer":
                if due is None:  # a new next-response step starts (as `_clocks` decides)
                    clock = self.start(row["severity"], row["plan"], message.created_at)
                    state[message.ticket] = (responded, clock.due_at, clock.started_at)
                continue
            if message.author.kind != "agent":
                continue

            def seconds(a: datetime, b: datetime, row: Any = row) -> int:
                assert self.seconds is not None
                return self.seconds(row["severity"], row["plan"], a, b)

            facts = answered(responded, due, started, row["created_at"], message.created_at, seconds)
            if facts is not None and facts.first_s is not None:
                first[message.ticket] = (pending.principal.id, facts.first_s)
            elif facts is not None:
                counted = steps.setdefault(message.ticket, [0, 0, 0])
                counted[0] += 1
                counted[1] += facts.next_s or 0
                counted[2] += 1 if facts.late else 0
            state[message.ticket] = (responded or message.created_at, None, None)
        none = (None, None)
        zero = [0, 0, 0]
        return ([first.get(t, none)[0] for t in bumped], [first.get(t, none)[1] for t in bumped],
                [steps.get(t, zero)[0] for t in bumped], [steps.get(t, zero)[1] for t in bumped],
                [steps.get(t, zero)[2] for t in bumped])

    async def _write(self, batch: list[Pending], look_up_repeats: bool = False) -> None:
        if look_up_repeats or self.beliefs is None:
            await self._write_locked(batch, look_up_repeats)
        else:
            await self._write_believed(batch, self.beliefs)

    async def _write_locked(self, batch: list[Pending], look_up_repeats: bool = False) -> None:
        """The batch in one transaction: its tickets locked first, then decided and stored."""
        started = time.perf_counter()
        async with self.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            db: Any = raw.driver_connection
            async with db.transaction():
                tickets = {r["id"]: r for r in await db.fetch(sql.LOCK, sorted({p.ticket_id for p in batch}))}
                accepted, decided = _admit(batch, tickets, self.hold, self.closed_until)
                existing = {}
                # Repeats are rare: the insert below skips them (ON CONFLICT) and the
                # batch is redone with this lookup only when one shows up.
                if accepted and look_up_repeats:
                    columns = list(zip(*(p.key for p, _ in accepted), strict=True))
                    existing = {(r["ticket_id"], r["author_kind"], r["author_id"], r["client_id"]): r
                                for r in await db.fetch(sql.EXISTING, *columns)}
                _number(accepted, tickets, existing, await _newer_replies(db, accepted, tickets), decided)
                decided.apply(set(tickets) | {p.ticket_id for p in batch})
                rows = []
                if decided.fresh:
                    rows = await db.fetch(sql.STORE, *self._store_args(tickets, decided).args)
                    if len(rows) != len(decided.fresh):
                        raise _Retried()  # rolls the whole transaction back: no seq is used up
                decided.stored({(r["ticket_id"], r["seq"]): r["id"] for r in rows}, tickets)
        self.metrics.committed("group", len(batch) - len(decided.slow), time.perf_counter() - started)
        await self._settle(batch)
        if decided.slow:
            await self._one_by_one(decided.slow)

    async def _write_believed(self, batch: list[Pending], beliefs: TicketBeliefs) -> None:
        """The batch decided from what this node believes of its tickets and stored in
        one statement (`commit_sql.TRY`), which commits the sends of every ticket whose
        row still holds that; the others' sends are decided again from the rows it
        returned. After `BELIEF_ATTEMPTS` the rest goes the locked way."""
        todo = batch
        slow: list[Pending] = []
        repeated = False
        async with self.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            db: Any = raw.driver_connection
            for _ in range(BELIEF_ATTEMPTS):
                started = time.perf_counter()
                ids = sorted({p.ticket_id for p in todo})
                unknown = [t for t in ids if beliefs.get(t) is None]
                if unknown:
                    for record in await db.fetch(sql.READ, unknown):
                        beliefs.learn(record["id"], from_record(record, record["id"]))
                tickets = {t: row for t in ids if (row := beliefs.get(t)) is not None}
                accepted, decided = _admit(todo, tickets, self.hold, self.closed_until)
                _number(accepted, tickets, {}, await _newer_replies(db, accepted, tickets), decided)
                store = self._store_args(tickets, decided)
                try:
                    rows = await db.fetch(sql.TRY, *store.args, ids, *checked(tickets))
                except asyncpg.UniqueViolationError:
                    repeated = True  # a retried send: nothing of this attempt was stored
                    break
                held = {r["ticket_id"] for r in rows if r["kind"] == 2}
                found = held | {r["ticket_id"] for r in rows if r["kind"] == 0}
                # A ticket without a row that the statement did not find either: its
                # sends' answers (not found) stand.
                held |= {t for t in ids if t not in tickets and t not in found}
                decided.apply(held)
                decided.stored({(r["ticket_id"], r["seq"]): r["message_id"] for r in rows if r["kind"] == 1},
                               tickets)
                done = [p for p in todo if p.ticket_id in held]
                slow.extend(p for p in decided.slow if p.ticket_id in held)
                self.metrics.committed("group", len(done), time.perf_counter() - started)
                self.stale += len(ids) - len(held)
                await self._settle(done)
                # What to believe now: what the statement wrote, or the row it found.
                for t in held & set(store.bumped):
                    beliefs.learn(t, after_store(tickets[t], decided.last[t], store.at[t], store.agent[t],
                                                 store.clocks.get(t)))
                for record in rows:
                    if record["kind"] == 0:
                        beliefs.learn(record["ticket_id"], from_record(record, record["ticket_id"]))
                for t in tickets.keys() - found:
                    beliefs.forget(t)  # gone since (purged): decided again without a row
                todo = [p for p in todo if p.ticket_id not in held and not p.done.done()]
                if not todo:
                    break
        if todo:
            for pending in todo:
                pending.result = None
            await self._write_locked(todo, look_up_repeats=repeated)
        if slow:
            await self._one_by_one(slow)

    def _store_args(self, tickets: dict[int, Any], decided: _Decided) -> _Store:
        """The store statement's columns: the messages, then per bumped ticket its new
        last seq, time, first response, clock and report facts."""
        fresh = decided.fresh
        at: dict[int, datetime] = {}
        agent: dict[int, bool] = {}
        public: dict[int, int | None] = {}
        for pending, m in fresh:  # one pass: a batch holds hundreds of sends
            t = m.ticket
            if t not in at or m.created_at > at[t]:
                at[t] = m.created_at
            # An agent's answer (not a private note) is the first response.
            agent[t] = agent.get(t, False) or (pending.principal.is_agent and not m.internal)
            if not m.internal:
                public[t] = m.seq  # seqs rise through the batch
            else:
                public.setdefault(t, None)
        bumped = sorted(at)
        clocks = self._clocks(tickets, fresh)
        args: tuple[list[Any], ...] = (
                [m.ticket for _, m in fresh], [m.seq for _, m in fresh], [m.author.kind for _, m in fresh],
                [m.author.id for _, m in fresh], [m.author.name for _, m in fresh], [m.body for _, m in fresh],
                [m.client_id for _, m in fresh], [m.created_at for _, m in fresh],
                [m.queued_until for _, m in fresh], bumped, [decided.last[t] for t in bumped],
                [at[t] for t in bumped], [agent[t] for t in bumped], [m.internal for _, m in fresh],
                [public[t] for t in bumped], [t in clocks for t in bumped], *_clock_columns(clocks, bumped),
                *self._facts(tickets, fresh, bumped))
        return _Store(args, bumped, at, agent, clocks)

    async def _settle(self, part: list[Pending]) -> None:
        """Committed: now the senders may hear about it, then everyone else (a send
        that ran out of time is announced too: it was committed after all)."""
        stored: list[tuple[Posted, str | None, str]] = []
        for pending in part:
            result = pending.result
            if result is None:
                continue
            if pending.done.done():
                if result.new:  # its sender heard `unavailable`: announced now, not on its retry
                    self._uncertain.pop(pending.key, None)
                    stored.append((result, pending.origin, pending.principal.key))
                continue
            result = self._settled(pending.key, result)
            stored.append((result, pending.origin, pending.principal.key))
            pending.done.set_result(result)
        self.pulse.beat()
        await self._announce(stored)
        self.batches += 1
        self.messages += len(part)


@dataclass(slots=True)
class _Store:
    """The store statement's arguments and what they do to each bumped ticket."""

    args: tuple[list[Any], ...]
    bumped: list[int]
    at: dict[int, datetime]
    agent: dict[int, bool]
    clocks: dict[int, Running]


@dataclass(slots=True)
class _Decided:
    """What a batch's sends come to, given their tickets' rows. Nothing reaches a
    sender until `apply` names the tickets whose rows were right (the believed way
    decides before it knows)."""

    queued_tickets: set[int]
    last: dict[int, int]
    fresh: list[tuple[Pending, Message]] = field(default_factory=list)
    slow: list[Pending] = field(default_factory=list)  # the post changes the ticket too: one by one
    failed: list[tuple[Pending, BaseException]] = field(default_factory=list)
    twins: list[tuple[Pending, Pending]] = field(default_factory=list)  # (first, the same send again)
    repeats: list[tuple[Pending, Message]] = field(default_factory=list)  # stored before, unchanged

    def apply(self, tickets: set[int]) -> None:
        """The answers known before the store (refusals, twins, repeats) for these tickets."""
        for pending, exc in self.failed:
            if pending.ticket_id in tickets:
                _fail(pending, exc)
        for first, second in self.twins:
            if first.ticket_id in tickets:
                first.done.add_done_callback(_mirror_into(second))

    def stored(self, ids: dict[tuple[int, int], int], tickets: dict[int, Any]) -> None:
        """The answers of the sends stored (found in `ids` by ticket and seq) and repeated."""
        for pending, message in self.repeats:
            _resolve_later(pending, message, tickets[pending.ticket_id]["shop_id"], new=False)
        for pending, message in self.fresh:
            stored_id = ids.get((message.ticket, message.seq))
            if stored_id is not None:
                _resolve_later(pending, replace(message, id=stored_id), tickets[pending.ticket_id]["shop_id"],
                               new=True, queued=message.ticket in self.queued_tickets)


def _admit(batch: list[Pending], tickets: dict[int, Any], hold: Hold, closed_until: ClosedUntil
           ) -> tuple[list[tuple[Pending, Admission]], _Decided]:
    """Each send admitted by the rule (`admit_post`) against its ticket's row."""
    decided = _Decided(set(), {t: r["last_seq"] for t, r in tickets.items()})
    accepted: list[tuple[Pending, Admission]] = []
    for pending in batch:
        row = tickets.get(pending.ticket_id)
        state = None if row is None else ThreadState(row["shop_id"], row["status"], row["severity"],
                                                     row["queued_until"], row["live_until"], row["plan"],
                                                     row["sla_due_at"])
        try:
            admitted = admit_post(pending.principal, pending.ticket_id, state, pending.now, hold, closed_until,
                                  pending.internal)
        except PomocError as exc:
            decided.failed.append((pending, exc))
            continue
        if admitted.reopens or admitted.takes_over:
            decided.slow.append(pending)
        else:
            accepted.append((pending, admitted))
    return accepted, decided


def _number(accepted: list[tuple[Pending, Admission]], tickets: dict[int, Any], existing: dict[Any, Any],
            newer: dict[int, list[int]], decided: _Decided) -> None:
    """The admitted sends numbered after their tickets' last seqs, in order; repeats,
    twins and replies that another agent's answer made stale set aside."""
    seen: dict[tuple[int, str, str, str], Pending] = {}
    for pending, admission in accepted:
        row = existing.get(pending.key)
        if row is not None:  # a retried send: the stored message, unchanged
            decided.repeats.append((pending, _message(row)))
            continue
        if pending.seen_seq is not None:
            # Another agent's reply stored before it (earlier, or earlier in this batch).
            since = newer.get(id(pending), []) + [
                m.seq for p, m in decided.fresh if m.ticket == pending.ticket_id and m.seq > pending.seen_seq
                and m.author.id != pending.principal.id and p.principal.is_agent and not m.internal]
            if since:
                decided.failed.append((pending, stale_reply(pending.ticket_id, since)))
                continue
        twin = seen.get(pending.key)
        if twin is not None:  # the same send twice in this batch
            decided.twins.append((twin, pending))
            continue
        seen[pending.key] = pending
        decided.last[pending.ticket_id] += 1
        author = Author.of(pending.principal)
        decided.fresh.append((pending, Message(pending.ticket_id, decided.last[pending.ticket_id], 0, author,
                                               pending.body, pending.now, pending.client_id,
                                               admission.queued_until, internal=pending.internal)))
        if admission.ticket_queued:
            decided.queued_tickets.add(pending.ticket_id)


def _clock_columns(clocks: dict[int, Running], bumped: list[int]) -> tuple[list[Any], ...]:
    """The new deadline, warning, start and rank per bumped ticket (unused where the
    clock did not move)."""
    kept = Running(None, None, None)
    states = [clocks.get(t, kept) for t in bumped]
    return ([c.due_at for c in states], [c.warning_at for c in states], [c.started_at for c in states],
            [c.rank for c in states])


async def _newer_replies(db: Any, accepted: list[tuple[Pending, Admission]], tickets: dict[int, Any]
                         ) -> dict[int, list[int]]:
    """Per checked send (by id()), the other agents' messages stored after what its
    console showed; a query only when some send's ticket moved past that."""
    checked = [p for p, _ in accepted if p.seen_seq is not None
               and may_be_stale(p.seen_seq, tickets[p.ticket_id]["last_seq"])]
    if not checked:
        return {}
    rows = await db.fetch(sql.NEWER, list(range(len(checked))), [p.ticket_id for p in checked],
                          [p.seen_seq for p in checked], [p.principal.id for p in checked])
    found: dict[int, list[int]] = {}
    for row in rows:
        found.setdefault(id(checked[row["i"]]), []).append(row["seq"])
    return found


def _down(exc: BaseException) -> bool:
    """The database is unreachable, hung or failing as a whole (not this data)."""
    return isinstance(exc, DATABASE_DOWN)  # asyncpg's own errors included (the raw path)


def _stop_expiry(pending: Pending) -> Callable[[asyncio.Future[Posted]], None]:
    def stop(_: asyncio.Future[Posted]) -> None:
        if pending.expiry is not None:
            pending.expiry.cancel()
            pending.expiry = None

    return stop


def _message(row: Any) -> Message:
    return Message(row["ticket_id"], row["seq"], row["id"], Author(row["author_kind"], row["author_id"],
                                                                     row["author_name"]),
                   row["body"], row["created_at"], row["client_id"], row["queued_until"], internal=row["internal"])


def _resolve_later(pending: Pending, message: Message, shop_id: str, *, new: bool, queued: bool = False) -> None:
    # Held until the transaction commits: an ack must never run ahead of the commit.
    pending.result = Posted(message, shop_id, new=new, ticket_queued=queued)


def _resolve(pending: Pending, posted: Posted) -> None:
    if not pending.done.done():
        pending.done.set_result(posted)


def _fail(pending: Pending, exc: BaseException) -> None:
    if not pending.done.done():
        pending.done.set_exception(exc)


def _mirror_into(target: Pending) -> Callable[[asyncio.Future[Posted]], None]:
    """The second of two identical sends in one batch gets the first one's answer."""

    def mirror(source: asyncio.Future[Posted]) -> None:
        if target.done.done():
            return
        error = None if source.cancelled() else source.exception()
        if source.cancelled():
            target.done.cancel()
        elif error is not None:
            target.done.set_exception(error)
        else:
            posted = source.result()
            target.done.set_result(Posted(posted.message, posted.shop_id, new=False))

    return mirror
