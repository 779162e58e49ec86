"""A customer hello's database work, batched across the hellos in flight.

A reconnect storm is thousands of hellos at once, each recording its user, reading
its shop's tickets, a new reader's unread state and replaying what it missed: small
statements each,
whose cost was SQLAlchemy's building, compiling and executing, not PostgreSQL's.
On PostgreSQL the hellos in flight share one statement of each kind, written as
raw SQL on asyncpg (as the group commit is): `= ANY($1)` and `unnest(...)` with a
LATERAL per shop or thread, so a batch reads exactly what each hello would have
read alone, on the same indexes. A lone hello on a quiet node runs at once
(`server.batching`). On SQLite (one process, one file) each hello reads
alone through the stores, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine

from server.batching import Coalesced
from server.clock import Clock
from server.principal import Principal
from server.rules.records import Message, Ticket
from server.store.attachments import AttachmentStore, linked
from server.store.db import ErrorSink, Pulse, error_kind, single_statements
from server.store.messages import MessageStore
from server.store.reads import ReadStore
from server.store.rows import MESSAGE_COLUMNS, TICKET_COLUMNS, message_row, ticket_row
from server.store.tickets import TicketStore

PG: Any = postgresql.dialect()  # type: ignore[no-untyped-call]

BATCH_MAX = 500  # hellos a statement serves at most


def _select_list(*columns: Any) -> str:
    """The SELECT list SQLAlchemy renders for these columns (labels included), so the
    raw statements read the same columns in the same order as `ticket_row` expects."""
    sql = str(select(*columns).compile(dialect=PG))
    return sql[len("SELECT "):sql.index("\nFROM")]


_TICKETS_OF_SHOPS = f"""
SELECT x.* FROM unnest($1::text[]) AS w(shop)
CROSS JOIN LATERAL (
  SELECT {_select_list(*TICKET_COLUMNS)}
  FROM tickets JOIN shops ON shops.id = tickets.shop_id
  WHERE tickets.shop_id = w.shop ORDER BY tickets.id DESC LIMIT $2
) AS x
"""
_PAGES = f"""
SELECT x.*, w.i FROM unnest($1::bigint[], $2::int[], $3::int[], $4::int[], $5::int[]) AS w(t, after, upto, n, i)
CROSS JOIN LATERAL (
  SELECT {_select_list(*MESSAGE_COLUMNS)}
  FROM messages WHERE messages.ticket_id = w.t AND messages.seq > w.after AND messages.seq <= w.upto
  ORDER BY messages.seq LIMIT w.n
) AS x
"""
# A customer reader's cursor and unread seqs per ticket (`ReadStore.unread_state`): the
# others' messages after its cursor, never a private note; `i` names the asking hello.
_UNREAD = """
SELECT w.i, w.t, coalesce(c.seq, 0) AS cursor, m.seq
FROM unnest($1::int[], $2::text[], $3::text[], $4::bigint[]) AS w(i, reader, author, t)
LEFT JOIN read_cursors c ON c.ticket_id = w.t AND c.reader = w.reader
LEFT JOIN messages m ON m.ticket_id = w.t AND m.seq > coalesce(c.seq, 0)
  AND (m.author_kind <> 'customer' OR m.author_id <> w.author) AND NOT m.internal
ORDER BY w.i, m.seq
"""
# Shops first (a customer's row needs its shop), then their users, in one statement.
_TOUCH = """
WITH s AS (
  INSERT INTO shops (id, name, plan, created_at, updated_at)
  SELECT v.id, v.name, v.plan, v.at, v.at FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
    AS v(id, name, plan, at)
  ON CONFLICT (id) DO UPDATE SET name = excluded.name, plan = excluded.plan, updated_at = excluded.updated_at
  RETURNING id
)
INSERT INTO customers (shop_id, user_id, name, email, first_seen_at, last_seen_at)
SELECT v.shop, v.uid, v.name, v.email, v.at, v.at
FROM unnest($5::text[], $6::text[], $7::text[], $8::text[], $9::timestamptz[]) AS v(shop, uid, name, email, at)
JOIN s ON s.id = v.shop
ON CONFLICT (shop_id, user_id) DO UPDATE
  SET name = excluded.name, email = excluded.email, last_seen_at = excluded.last_seen_at
"""


@dataclass(frozen=True, slots=True)
class _Visit:
    """A customer's record as its hello states it (the key of a batched upsert)."""

    shop: str
    shop_name: str
    plan: str
    user: str
    name: str | None
    email: str | None
    at: datetime


Page = tuple[int, int, int, int]  # ticket, after seq, up to seq, at most
UnreadState = dict[int, tuple[int, list[int]]]  # ticket → (cursor, unread seqs)


@dataclass(frozen=True, slots=True)
class _Reader:
    """A customer reader asking for its unread state in these tickets."""

    key: str
    author: str
    tickets: tuple[int, ...]


class HelloReads:
    """`touch_customer`, `shop_tickets`, `unread_state` and `replay_page` for the hello,
    batched on PostgreSQL."""

    def __init__(self, engine: AsyncEngine, tickets_store: TicketStore, messages_store: MessageStore,
                 reads_store: ReadStore, attachments: AttachmentStore, wall: Clock, pulse: Pulse, failed: ErrorSink,
                 *, shop_limit: int) -> None:
        self._tickets = tickets_store
        self._messages = messages_store
        self._reads = reads_store
        self._attachments = attachments
        self._wall = wall
        self._pulse = pulse
        self._failed = failed
        self._shop_limit = shop_limit
        self._single = single_statements(engine)
        self.batched = engine.dialect.name == "postgresql"
        self._touch: Coalesced[_Visit, bool] = Coalesced(self._touch_many, bool, max_batch=BATCH_MAX)
        self._shops: Coalesced[str, list[Ticket]] = Coalesced(self._tickets_of, list, max_batch=BATCH_MAX)
        self._pages: Coalesced[Page, list[Message]] = Coalesced(self._pages_of, list, max_batch=BATCH_MAX)
        self._unread: Coalesced[_Reader, UnreadState] = Coalesced(self._unread_of, dict, max_batch=BATCH_MAX)

    async def touch_customer(self, principal: Principal, now: datetime) -> None:
        """Record the shop and its user (readers of the shop's tickets)."""
        if principal.shop is None:
            return
        if not self.batched:
            await self._tickets.touch_customer(principal, now)
            return
        await self._touch.get(_Visit(principal.shop, principal.shop_name or principal.shop,
                                     principal.plan or "standard", principal.id, principal.name,
                                     principal.email, now))

    async def shop_tickets(self, principal: Principal) -> list[Ticket]:
        """The customer's shop tickets, newest first (at most `shop_limit`)."""
        if not self.batched:
            return await self._tickets.list_for(principal, limit=self._shop_limit)
        return await self._shops.get(principal.shop or "")

    async def unread_state(self, principal: Principal, ticket_ids: Iterable[int]) -> UnreadState:
        """A new reader's unread state (`ReadStore.unread_state`); customers' batched."""
        ids = list(dict.fromkeys(ticket_ids))
        if not ids:
            return {}
        if not self.batched or principal.is_agent:
            return await self._reads.unread_state(principal, ids)
        return await self._unread.get(_Reader(principal.key, principal.id, tuple(ids)))

    async def replay_page(self, ticket_id: int, after: int, upto: int, limit: int) -> list[Message]:
        """One page of a replay (`MessageStore.replay_page`), with its attachments' fresh links."""
        if not self.batched:
            found = await self._messages.replay_page(ticket_id, after, upto, limit)
            return await self._attachments.with_links(found, self._wall.now())
        return await self._pages.get((ticket_id, after, upto, limit))

    # ------------------------------------------------------------ the batches
    async def _run(self, operation: str, work: Callable[[Any], Any]) -> Any:
        try:
            async with self._single.connect() as conn:
                raw = await conn.get_raw_connection()
                result = await work(raw.driver_connection)
        except BaseException as exc:
            self._failed(operation, error_kind(exc))
            raise
        self._pulse.beat()
        return result

    async def _touch_many(self, visits: list[_Visit]) -> Mapping[_Visit, bool]:
        # One row per shop and per user: ON CONFLICT may touch a row once a statement.
        shop_rows = {v.shop: v for v in visits}
        users = {(v.shop, v.user): v for v in visits}

        async def work(db: Any) -> None:
            await db.execute(_TOUCH, list(shop_rows), [v.shop_name for v in shop_rows.values()],
                             [v.plan for v in shop_rows.values()], [v.at for v in shop_rows.values()],
                             [s for s, _ in users], [u for _, u in users], [v.name for v in users.values()],
                             [v.email for v in users.values()], [v.at for v in users.values()])

        await self._run("insert", work)
        return dict.fromkeys(visits, True)

    async def _tickets_of(self, shop_ids: list[str]) -> Mapping[str, list[Ticket]]:
        rows = await self._run("select", lambda db: db.fetch(_TICKETS_OF_SHOPS, shop_ids, self._shop_limit))
        out: dict[str, list[Ticket]] = {}
        for row in rows:
            out.setdefault(row[1], []).append(ticket_row(row))
        return out

    async def _unread_of(self, readers: list[_Reader]) -> Mapping[_Reader, UnreadState]:
        asks = [(i, r, t) for i, r in enumerate(readers) for t in r.tickets]
        rows = await self._run("select", lambda db: db.fetch(
            _UNREAD, [i for i, _, _ in asks], [r.key for _, r, _ in asks], [r.author for _, r, _ in asks],
            [t for _, _, t in asks]))
        states: list[UnreadState] = [{} for _ in readers]
        for i, ticket, cursor, seq in rows:
            state = states[i].setdefault(ticket, (cursor, []))
            if seq is not None:
                state[1].append(seq)
        return {reader: states[i] for i, reader in enumerate(readers)}

    async def _pages_of(self, pages: list[Page]) -> Mapping[Page, list[Message]]:
        async def work(db: Any) -> tuple[list[Any], dict[int, list[dict[str, Any]]]]:
            rows = await db.fetch(_PAGES, *map(list, zip(*pages, strict=True)), list(range(len(pages))))
            ids = list({r[2] for r in rows})
            return rows, await self._attachments.for_messages_on(db, ids, self._wall.now()) if ids else {}

        rows, entries = await self._run("select", work)
        # Rows carry the index of the page they belong to (the last column, which
        # `message_row` does not read): two windows of one ticket each get their own.
        found: list[list[Message]] = [[] for _ in pages]
        for row in rows:
            found[row[len(MESSAGE_COLUMNS)]].append(message_row(row))
        return {page: linked(found[i], entries) for i, page in enumerate(pages)}

