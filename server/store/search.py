"""Search: the tickets whose title, or one of whose messages, holds every word asked;
and, on PostgreSQL, the indexer that keeps the messages' words off the hot path.

Always through the index migration 0012 built, never a scan of the messages.
PostgreSQL: `search_documents.words` (GIN) for the messages up to `search_cursor`,
plus the few messages past the cursor read by id and matched directly (so a message
is found the moment it is committed), and the expression GIN index on ticket titles;
SQLite: its FTS5 tables (`messages_search`, `tickets_search`), kept by triggers.
A test reads the query plans.

Why the indexer: a GIN index on `messages` (or a generated column) would make every
stored message pay for folding its text and for the index insert inside the
group-commit writer's transaction — measured at nearly twice the writer's cost per
message (`bench/search_writes.py`). `SearchIndexer.index_pending` instead reads what
was committed since its cursor, folds it here in Python (`server.rules.searchtext`)
and stores the words, in batches, as a background task of wherever the jobs run (the
worker; the web process in embedded mode or with POMOC_JOBS_IN_WEB), one at a time:
the cursor row is locked, the others skip. Folding runs in a thread: a long message
costs about 0.7 ms of it, which the event loop must not wait for. It never skips a message that commits
late: the cursor only moves up to message ids that every transaction writing
`messages` when they were handed out has finished with (`Settled`).

The tsquery and the cursor go into the statements as literals, not parameters:
terms are `[a-z0-9]+` by the rule and the cursor an integer (nothing to quote), and
literals keep PostgreSQL planning each search for its own words — a rare word through
the GIN index, a word in a quarter of the messages by walking the newest documents
backwards until the page is full — where a prepared statement's generic plan would
pick one way for all.

Hits are the newest first: the newest `limit * OVERFETCH` matching messages and
matching titles, one result per ticket (its newest hit), `limit` of them. System
messages (acknowledgments, notes about status) are not indexed: they are the same
boilerplate in every ticket. What this module does not do: decide who may search
what (the use case passes the shop of a customer and `customer=True`), make
snippets (`server.rules.searchtext`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Select, TextClause, column, select, table, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.rules.records import Ticket
from server.rules.searchtext import Query, words
from server.store.db import DATABASE_DOWN, describe, single_statements
from server.store.models import messages, tickets
from server.store.rows import ticket_row, ticket_select

log = logging.getLogger(__name__)
OVERFETCH = 4  # matching messages read per result asked, so that a few busy tickets still fill a page
INDEX_BATCH = 500  # messages the indexer stores per transaction (bodies up to 16 KiB each in memory)
# The newest indexed messages a search reads in id order before it turns to the GIN
# index for older ones (a bound on its cost: about 1 µs each when nothing matches).
WINDOW = 50_000
INDEX_EVERY = 0.5  # seconds between the indexer's looks when it has caught up
_NOT_SYSTEM = text("messages.author_kind <> 'system'")
_messages_fts = table("messages_search", column("rowid"))
_tickets_fts = table("tickets_search", column("rowid"))
_documents = table("search_documents", column("message_id"), column("words"))


@dataclass(frozen=True, slots=True)
class Found:
    """One result: the ticket, the seq of its matching message (None: its title
    matched) and the text that matched (the body or the title)."""

    ticket: Ticket
    seq: int | None
    text: str


def _customer_visible(m: Any) -> ColumnElement[bool]:
    """The messages a customer's search may find: never a private note. Messages held
    for working hours are the customer's own and stay findable (agents find them too)."""
    return cast(ColumnElement[bool], m.c.internal.is_(False))


class SearchStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.single = single_statements(engine)
        self.postgresql = engine.dialect.name == "postgresql"

    def statements(self, query: Query, *, limit: int, customer: bool, shop: str | None = None,
                   status: str | None = None, department: str | None = None,
                   indexed_upto: int = 0) -> list[Select[Any]]:
        """The reads of a search, each newest first. SQLite: matching messages and
        matching titles. PostgreSQL: the indexed messages among the newest `WINDOW`
        below the indexer's cursor `indexed_upto`, the older indexed ones, the
        messages past the cursor, and titles. `search` runs them; the plan tests
        EXPLAIN them."""
        fetch = limit * OVERFETCH
        of_tickets: list[ColumnElement[bool] | TextClause] = []
        if shop is not None:
            of_tickets.append(tickets.c.shop_id == shop)
        if status is not None:
            of_tickets.append(tickets.c.status == status)
        if department is not None:
            of_tickets.append(tickets.c.department == department)
        found = (select(messages.c.ticket_id, messages.c.seq, messages.c.body, messages.c.created_at)
                 .select_from(messages.join(tickets, tickets.c.id == messages.c.ticket_id))
                 .where(*of_tickets))
        if customer:
            found = found.where(_customer_visible(messages))
        titles = select(tickets.c.id, tickets.c.title, tickets.c.created_at).where(*of_tickets)
        if self.postgresql:
            tsquery = _tsquery(query)
            floor = max(0, int(indexed_upto) - WINDOW)
            indexed = (found.join_from(messages, _documents, _documents.c.message_id == messages.c.id)
                       .where(text(f"search_documents.words @@ {tsquery}")))
            newest = (indexed.where(text(f"search_documents.message_id > {floor}"))
                      .order_by(_documents.c.message_id.desc()))
            # Sorted by an expression, not read in the key's order: the GIN index finds
            # every match and the few there are get sorted (see `search`).
            older = (indexed.where(text(f"search_documents.message_id <= {floor}"))
                     .order_by(text("search_documents.message_id + 0 DESC")))
            recent = (found.where(text(f"messages.id > {int(indexed_upto)}"), _NOT_SYSTEM,
                                  text(f"{_folded('messages.body')} @@ {tsquery}"))
                      .order_by(messages.c.id.desc()))
            titles = (titles.where(text(f"{_folded('tickets.title')} @@ {tsquery}"))
                      .order_by(text("tickets.id + 0 DESC")))
            return [newest.limit(fetch), older.limit(fetch), recent.limit(fetch), titles.limit(fetch)]
        match = text("messages_search MATCH :messages_match").bindparams(messages_match=query.fts5())
        indexed = (found.join_from(messages, _messages_fts, _messages_fts.c.rowid == messages.c.id)
                   .where(match).order_by(_messages_fts.c.rowid.desc()))
        title_match = text("tickets_search MATCH :tickets_match").bindparams(tickets_match=query.fts5())
        titles = (titles.join_from(tickets, _tickets_fts, _tickets_fts.c.rowid == tickets.c.id)
                  .where(title_match).order_by(_tickets_fts.c.rowid.desc()))
        return [indexed.limit(fetch), titles.limit(fetch)]

    async def search(self, query: Query, *, limit: int, customer: bool, shop: str | None = None,
                     status: str | None = None, department: str | None = None) -> list[Found]:
        """Up to `limit` tickets matching every term of `query`, newest hit first,
        among the tickets of `shop` (if given) with that status and department."""
        hits: list[tuple[datetime, int, int | None, str]] = []

        def add(rows: Any, title: bool = False) -> int:
            n = 0
            for row in rows:
                n += 1
                if title:
                    hits.append((row[2], row[0], None, row[1]))
                else:
                    hits.append((row[3], row[0], row[1], row[2]))
            return n

        fetch = limit * OVERFETCH
        kw: dict[str, Any] = {"limit": limit, "customer": customer, "shop": shop, "status": status,
                              "department": department}
        if self.postgresql:
            async with self.engine.connect() as conn, conn.begin():
                upto = (await conn.execute(text("SELECT message_id FROM search_cursor WHERE id = 1"))).scalar()
                newest, older, recent, titles = self.statements(query, indexed_upto=upto or 0, **kw)
                # The newest documents first, read backwards in id order and never by
                # the GIN index: at most WINDOW of them, however common or rare the
                # words, whatever the planner guesses of how many match (it guesses a
                # word it has no statistics for as fairly common, and would walk all
                # ten million backwards looking for it). Only when they do not fill
                # the page, the older ones through the GIN index: the words are rare
                # then, and sorting their matches costs little.
                await conn.execute(text("SET LOCAL enable_bitmapscan = off"))
                await conn.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))
                got = add(await conn.execute(newest))
                await conn.execute(text("SET LOCAL enable_bitmapscan = on"))
                if got < fetch:
                    add(await conn.execute(older))
                add(await conn.execute(recent))
                add(await conn.execute(titles), title=True)
                return await self._results(conn, hits, limit)
        indexed, titles = self.statements(query, **kw)
        async with self.single.connect() as conn:
            add(await conn.execute(indexed))
            add(await conn.execute(titles), title=True)
            return await self._results(conn, hits, limit)

    @staticmethod
    async def _results(conn: AsyncConnection, hits: list[tuple[datetime, int, int | None, str]],
                       limit: int) -> list[Found]:
        hits.sort(key=lambda h: (h[0], h[2] or 0), reverse=True)
        best: dict[int, tuple[int | None, str]] = {}
        for _, ticket_id, seq, matched in hits:
            if ticket_id not in best:
                best[ticket_id] = (seq, matched)
                if len(best) == limit:
                    break
        if not best:
            return []
        rows = await conn.execute(ticket_select().where(tickets.c.id.in_(list(best))))
        found = {r[0]: ticket_row(r) for r in rows}
        return [Found(found[t], seq, matched) for t, (seq, matched) in best.items() if t in found]


def _folded(column_name: str) -> str:
    # Exactly the expression of ix_tickets_search (migration 0012), or it cannot be used.
    return f"to_tsvector('simple'::regconfig, pomoc_search_text({column_name}))"


def _tsquery(query: Query) -> str:
    if not all(term.isascii() and term.isalnum() for term in query.terms):
        raise ValueError("search terms must be folded words")  # the rule makes them so; never quote here
    return f"to_tsquery('simple'::regconfig, '{query.tsquery()}')"


# ------------------------------------------------------------------ the indexer
# The last message id handed out, then (a second statement: in this order) the
# transactions of this database writing `messages` now. Every id up to that value was
# taken by a transaction that has ended or is among them: the INSERT holds its lock
# on the table before it takes an id. One without an xid yet may hold an id: unknown.
_HANDED_OUT = text("SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence('messages', 'id')::regclass), 0)")
_WRITERS = text("SELECT a.backend_xid::text FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'relation' AND l.relation = 'messages'::regclass "
                "AND l.mode = 'RowExclusiveLock' AND l.pid <> pg_backend_pid()")
_RUNNING = text("SELECT a.backend_xid::text FROM pg_stat_activity a WHERE a.backend_xid IS NOT NULL")
_CURSOR = text("SELECT message_id FROM search_cursor WHERE id = 1 FOR UPDATE SKIP LOCKED")
_PENDING = text("SELECT id, body FROM messages WHERE id > :after AND id <= :upto AND author_kind <> 'system' "
                "ORDER BY id LIMIT :limit")
# A message deleted meanwhile (the purge) is left out rather than failing the batch.
_STORE = text("INSERT INTO search_documents (message_id, words) "
              "SELECT d.id, array_to_tsvector(string_to_array(d.words, ' ')) "
              "FROM unnest(CAST(:ids AS bigint[]), CAST(:words AS text[])) AS d(id, words) "
              "WHERE EXISTS (SELECT 1 FROM messages m WHERE m.id = d.id) ON CONFLICT (message_id) DO NOTHING")
_MOVE = text("UPDATE search_cursor SET message_id = :upto WHERE id = 1")


def _fold(bodies: list[str]) -> list[str]:
    return [" ".join(dict.fromkeys(words(body))) for body in bodies]


class Settled:
    """Which message ids no transaction can still commit (pure bookkeeping).

    Ids are handed out by a sequence before their transaction commits, so a smaller
    id may become visible after a larger one. Each observation pairs the last id
    handed out (`hi`) with the transactions that were writing `messages` right after
    (`writers`); once none of them runs any more, every id up to `hi` is settled.
    An observation with a writer of unknown transaction id is not kept. Only
    writers of `messages` count: a long transaction elsewhere holds nothing up."""

    def __init__(self) -> None:
        self._waiting: deque[tuple[int, frozenset[str]]] = deque()
        self.upto = 0

    def observe(self, hi: int, writers: frozenset[str] | None, running: frozenset[str]) -> int:
        """`writers` None: unknown this time. `running`: transactions running now."""
        if writers is not None and (not self._waiting or hi > self._waiting[-1][0]):
            self._waiting.append((hi, writers))
        while self._waiting and not (self._waiting[0][1] & running):
            self.upto = max(self.upto, self._waiting.popleft()[0])
        return self.upto


class SearchIndexer:
    """Stores the words of committed messages in `search_documents` (PostgreSQL)."""

    def __init__(self, engine: AsyncEngine, batch: int = INDEX_BATCH) -> None:
        self.engine = engine
        self.batch = batch
        self.active = engine.dialect.name == "postgresql"  # SQLite's triggers index in the writing transaction
        self.settled = Settled()

    async def index_pending(self) -> int:
        """One batch: the messages past the cursor that are settled. Returns how many
        were read (a full batch: call again)."""
        if not self.active:
            return 0
        async with self.engine.begin() as conn:
            after = (await conn.execute(_CURSOR)).scalar()
            if after is None:
                return 0  # another node holds the cursor
            hi = int((await conn.execute(_HANDED_OUT)).scalar() or 0)
            found = [r[0] for r in await conn.execute(_WRITERS)]
            writers = None if any(x is None for x in found) else frozenset(found)
            running = frozenset(r[0] for r in await conn.execute(_RUNNING))
            upto = self.settled.observe(hi, writers, running)
            if upto <= after:
                return 0
            return await self._store(conn, int(after), upto)

    async def _store(self, conn: AsyncConnection, after: int, upto: int) -> int:
        rows = (await conn.execute(_PENDING, {"after": after, "upto": upto, "limit": self.batch})).all()
        if rows:
            folded = await asyncio.to_thread(_fold, [r[1] for r in rows])
            await conn.execute(_STORE, {"ids": [r[0] for r in rows], "words": folded})
        # A full batch stops at its last message; a shorter one covered everything to `upto`.
        await conn.execute(_MOVE, {"upto": rows[-1][0] if len(rows) == self.batch else upto})
        return len(rows)

    async def run(self, every: float = INDEX_EVERY) -> None:
        """Index forever (a background task of the node): at once while there is a
        backlog, every `every` seconds once caught up; a failing database is logged
        and tried again."""
        if not self.active:
            return
        while True:
            try:
                if await self.index_pending() >= self.batch:
                    continue
            except asyncio.CancelledError:
                raise
            except DATABASE_DOWN as exc:
                log.warning("search.index_failed", extra={"error": describe(exc)})
            except Exception:
                log.exception("search.index_failed")
            await asyncio.sleep(every)  # a timer between looks, not waiting for another task
