"""Search: the tickets whose title, or one of whose messages, holds every word asked.

Always through the index migration 0012 built, never a scan of the messages:
PostgreSQL matches `to_tsvector('simple', pomoc_search_text(body))` — the expression
of the GIN index `ix_messages_search`, spelled here exactly as there — against a
`to_tsquery` of the folded terms (`server.rules.searchtext`); SQLite matches its
FTS5 tables (`messages_search`, `tickets_search`). A test reads the query plans.

The tsquery goes into the statement as a literal, not a parameter: terms are
`[a-z0-9]+` by the rule (nothing to quote), and a literal keeps PostgreSQL planning
each search for its own words — a rare word through the GIN index, a word in a
quarter of the messages by walking the newest messages backwards until the page is
full — where a prepared statement's generic plan would pick one way for all.

Hits are the newest first: the newest `limit * OVERFETCH` matching messages and
matching titles, one result per ticket (its newest hit), `limit` of them. System
messages (acknowledgments, notes about status) are not indexed: they are the same
boilerplate in every ticket. What this module does not do: decide who may search
what (the use case passes the shop of a customer and `customer=True`), make
snippets (`server.rules.searchtext`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, TextClause, column, select, table, text, true
from sqlalchemy.ext.asyncio import AsyncEngine

from server.rules.records import Ticket
from server.rules.searchtext import Query
from server.store.db import single_statements
from server.store.models import messages, tickets
from server.store.rows import ticket_row, ticket_select

OVERFETCH = 4  # matching messages read per result asked, so that a few busy tickets still fill a page
_NOT_SYSTEM = text("messages.author_kind <> 'system'")  # the partial index's own predicate, as a literal
_messages_fts = table("messages_search", column("rowid"))
_tickets_fts = table("tickets_search", column("rowid"))


@dataclass(frozen=True, slots=True)
class Found:
    """One result: the ticket, the seq of its matching message (None: its title
    matched) and the text that matched (the body or the title)."""

    ticket: Ticket
    seq: int | None
    text: str


def _customer_visible(m: Any) -> ColumnElement[bool]:
    """The messages a customer's search may find. Private notes never: once messages
    carry `internal`, this is `m.c.internal.is_(False)`. Messages held for working
    hours are the customer's own and stay findable (agents find them too)."""
    return true()


class SearchStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.single = single_statements(engine)
        self.postgresql = engine.dialect.name == "postgresql"

    def statements(self, query: Query, *, limit: int, customer: bool, shop: str | None = None,
                   status: str | None = None, department: str | None = None) -> tuple[Select[Any], Select[Any]]:
        """The two reads of a search: matching messages and matching titles, newest
        first (`search` runs them; the plan tests EXPLAIN them)."""
        fetch = limit * OVERFETCH
        filters: list[ColumnElement[bool] | TextClause] = []
        if shop is not None:
            filters.append(tickets.c.shop_id == shop)
        if status is not None:
            filters.append(tickets.c.status == status)
        if department is not None:
            filters.append(tickets.c.department == department)
        found_messages = (select(messages.c.ticket_id, messages.c.seq, messages.c.body, messages.c.created_at)
                          .select_from(messages.join(tickets, tickets.c.id == messages.c.ticket_id))
                          .where(_NOT_SYSTEM, *filters))
        found_titles = select(tickets.c.id, tickets.c.title, tickets.c.created_at).where(*filters)
        if customer:
            found_messages = found_messages.where(_customer_visible(messages))
        if self.postgresql:
            found_messages = (found_messages.where(_pg_match("messages.body", query))
                              .order_by(messages.c.id.desc()))
            found_titles = found_titles.where(_pg_match("tickets.title", query)).order_by(tickets.c.id.desc())
        else:
            match = text("messages_search MATCH :messages_match").bindparams(messages_match=query.fts5())
            found_messages = (found_messages.join_from(messages, _messages_fts,
                                                       _messages_fts.c.rowid == messages.c.id)
                              .where(match).order_by(_messages_fts.c.rowid.desc()))
            title_match = text("tickets_search MATCH :tickets_match").bindparams(tickets_match=query.fts5())
            found_titles = (found_titles.join_from(tickets, _tickets_fts, _tickets_fts.c.rowid == tickets.c.id)
                            .where(title_match).order_by(_tickets_fts.c.rowid.desc()))
        return found_messages.limit(fetch), found_titles.limit(fetch)

    async def search(self, query: Query, *, limit: int, customer: bool, shop: str | None = None,
                     status: str | None = None, department: str | None = None) -> list[Found]:
        """Up to `limit` tickets matching every term of `query`, newest hit first,
        among the tickets of `shop` (if given) with that status and department."""
        found_messages, found_titles = self.statements(query, limit=limit, customer=customer, shop=shop,
                                                       status=status, department=department)
        hits: list[tuple[datetime, int, int | None, str]] = []
        async with self.single.connect() as conn:
            for ticket_id, seq, body, at in await conn.execute(found_messages):
                hits.append((at, ticket_id, seq, body))
            for ticket_id, title, at in await conn.execute(found_titles):
                hits.append((at, ticket_id, None, title))
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


def _pg_match(expression: str, query: Query) -> TextClause:
    # Exactly the indexes' expression (migration 0012), or the planner cannot use them.
    tsquery = query.tsquery()
    if not all(term.isascii() and term.isalnum() for term in query.terms):
        raise ValueError("search terms must be folded words")  # the rule makes them so; never quote here
    return text(f"to_tsvector('simple'::regconfig, pomoc_search_text({expression})) @@ "
                f"to_tsquery('simple'::regconfig, '{tsquery}')")
