"""The search index (migration 0012), store level on real SQLite and PostgreSQL: what
it indexes is what `server.rules.searchtext` calls words; a search's reads go
through the index (the query plan says so, so no change can quietly make them a
scan); the index follows the rows it holds (triggers on SQLite, an expression index
on PostgreSQL), written with the message and gone with the ticket."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.principal import Principal, Role
from server.rules.policy import SupportPolicy
from server.rules.records import Author, NewTicket, Ticket
from server.rules.searchtext import parse_query, words
from server.rules.tickets import ClosedUntil
from server.store.db import create_engine
from server.store.messages import MessageStore
from server.store.search import SearchIndexer, SearchStore
from server.store.tickets import TicketStore
from tests import services
from tests.conftest import drop_store, fresh_store

NOW = datetime.fromisoformat(services.WORKING_CLOCK)
CUSTOMER = Principal(Role.customer, "owner", "Ola", shop="shop-s", shop_name="Sklep", plan="standard")
OTHER = Principal(Role.customer, "owner", "Ela", shop="shop-t", shop_name="Drugi", plan="standard")
AGENT = Principal(Role.agent, "agent-s", "Agnieszka")
SAMPLES = [
    "Płatność przez PRZELEWY24 nie działa!",
    "ŁÓDŹ, źdźbło; Gęślą jaźń — zażółć",
    "e-mail: jan.kowalski@example.pl, zamówienie #48213 (12.5 zł)",
    "ZAŻÓŁĆ gęślą JAŹŃ",
    "snake_case, CamelCase i 1e5 a_b",
]


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request, tmp_path: Path) -> AsyncIterator[tuple[str, AsyncEngine]]:
    settings = await asyncio.to_thread(fresh_store, request.param, tmp_path, "s")
    engine = create_engine(settings)
    try:
        yield request.param, engine
    finally:
        await engine.dispose()
        await asyncio.to_thread(drop_store, settings)


def _never_hold(*_: object) -> None:
    return None


def _never_closed(*_: object) -> None:
    return None


_tick = itertools.count(1)


def _now() -> datetime:
    return NOW + timedelta(seconds=next(_tick))  # one after the other: "newest first" is defined


async def _ticket(tickets: TicketStore, who: Principal, title: str, body: str, key: str) -> Ticket:
    opened = await tickets.open(who, NewTicket(title, body, "question", {}, key, department="payments"),
                                [(Author.of(who), body)], _now())
    return opened.ticket


async def _post(engine: AsyncEngine, who: Principal, ticket: int, body: str, key: str) -> None:
    closed: ClosedUntil = _never_closed  # type: ignore[assignment]
    await MessageStore(engine).post(who, ticket, body, key, _now(), _never_hold, closed,  # type: ignore[arg-type]
                                    SupportPolicy.from_config().next_response)


async def test_the_index_holds_the_words_the_rule_finds(store):
    kind, engine = store
    tickets = TicketStore(engine)
    ticket = await _ticket(tickets, CUSTOMER, "Próbki", "opis", "samples")
    for i, sample in enumerate(SAMPLES):
        await _post(engine, CUSTOMER, ticket.id, sample, f"sample-{i}")
    search = SearchStore(engine)
    for sample in SAMPLES:
        for word in {w for w in words(sample) if len(w) >= 2}:
            found = await search.search(parse_query(word), limit=5, customer=False)
            assert [f.ticket.id for f in found] == [ticket.id], (kind, sample, word)
            assert found[0].text == sample or word in words(found[0].text)
    if kind == "postgresql":
        async with engine.connect() as conn:
            for sample in SAMPLES:
                lexemes = (await conn.execute(text(
                    "SELECT array(SELECT unnest(tsvector_to_array("
                    "to_tsvector('simple'::regconfig, pomoc_search_text(:t)))))"), {"t": sample})).scalar()
                assert set(lexemes) == set(words(sample)), sample


async def test_every_word_must_match_and_diacritics_fold_both_ways(store):
    kind, engine = store
    tickets = TicketStore(engine)
    one = await _ticket(tickets, CUSTOMER, "Bramka", "Płatność przez Przelewy24 nie przechodzi", "one")
    two = await _ticket(tickets, OTHER, "Pytanie", "platnosc blikiem dziala, przelewy24 tez", "two")
    three = await _ticket(tickets, OTHER, "Płatności PayU", "coś innego", "three")
    search = SearchStore(engine)

    async def ids(q: str, **kw: object) -> list[int]:
        return [f.ticket.id for f in await search.search(parse_query(q), limit=20, customer=False, **kw)]

    assert await ids("platnosc przelewy24") == [two.id, one.id]  # newest first
    assert await ids("PŁATNOŚĆ") == [two.id, one.id]
    assert await ids("przechodzi płatność") == [one.id]
    assert await ids("platnosci payu") == [three.id]  # the title
    assert await ids("platnosc przelewy24", shop="shop-s") == [one.id]
    assert await ids("platnosc", status="closed") == []
    assert await ids("platnosc", department="shipping") == []
    found = await search.search(parse_query("payu"), limit=20, customer=False)
    assert found[0].seq is None and found[0].text == "Płatności PayU"
    found = await search.search(parse_query("przechodzi"), limit=20, customer=False)
    assert found[0].seq == 1


async def test_deleting_a_ticket_takes_its_words_out_of_the_index(store):
    kind, engine = store
    tickets = TicketStore(engine)
    gone = await _ticket(tickets, CUSTOMER, "Znikający", "słowo zniknieciex", "gone")
    search = SearchStore(engine)
    assert len(await search.search(parse_query("zniknieciex"), limit=5, customer=False)) == 1
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM tickets WHERE id = :id"), {"id": gone.id})
    assert await search.search(parse_query("zniknieciex"), limit=5, customer=False) == []
    assert await search.search(parse_query("znikajacy"), limit=5, customer=False) == []
    if kind == "sqlite":
        async with engine.connect() as conn:
            left = (await conn.execute(text(
                "SELECT count(*) FROM messages_search WHERE messages_search MATCH 'zniknieciex'"))).scalar()
        assert left == 0


def _variants(search: SearchStore) -> list[tuple[str, object]]:
    query = parse_query("platnosc przelewy24")
    parts = (["newest messages", "older messages", "recent messages", "titles"] if search.postgresql
             else ["messages", "titles"])
    out = []
    for name, kw in (("agent", {"customer": False}), ("agent, filters", {"customer": False, "status": "open",
                                                                         "department": "payments"}),
                     ("customer", {"customer": True, "shop": "shop-s"})):
        reads = search.statements(query, limit=20, indexed_upto=100_000, **kw)  # type: ignore[arg-type]
        out += [(f"{name}: {part}", read) for part, read in zip(parts, reads, strict=True)]
    return out


def _sql(engine: AsyncEngine, statement: object) -> str:
    return str(statement.compile(engine.sync_engine, compile_kwargs={"literal_binds": True}))  # type: ignore[attr-defined]


async def test_every_search_read_uses_the_index(store):
    kind, engine = store
    search = SearchStore(engine)
    async with engine.connect() as conn:
        if kind == "postgresql":
            # Even told to avoid them, the planner scans when no index fits the
            # expression; with the index's exact expression it takes the index.
            await conn.execute(text("SET enable_seqscan = off"))
            await conn.execute(text("SET enable_indexscan = off"))
        for name, statement in _variants(search):
            sql = _sql(engine, statement)
            if kind == "postgresql":
                plan = "\n".join(r[0] for r in await conn.execute(text("EXPLAIN " + sql)))
                part = name.split(": ")[1]
                if part == "newest messages":
                    continue  # read in id order on purpose (SearchStore.search), bounded by WINDOW
                index = {"older messages": "ix_search_documents", "recent messages": "messages_pkey",
                         "titles": "ix_tickets_search"}[part]
                if name.startswith("agent:"):
                    assert f"Bitmap Index Scan on {index}" in plan, (name, plan)
                # Filters may rightly start from the few tickets they leave (then the
                # messages by their ticket index); never from a scan.
                assert not re.search(r"Seq Scan on (messages|tickets|search_documents)", plan), (name, plan)
            else:
                plan = "\n".join(str(r[-1]) for r in await conn.execute(text("EXPLAIN QUERY PLAN " + sql)))
                fts = "tickets_search" if "titles" in name else "messages_search"
                assert f"SCAN {fts} VIRTUAL TABLE INDEX" in plan, (name, plan)
                assert not re.search(r"SCAN (messages|tickets)\b(?!_)", plan), (name, plan)


async def _index_everything(engine: AsyncEngine) -> SearchIndexer:
    indexer = SearchIndexer(engine)
    for _ in range(100):  # a few rounds settle it; bounded so a broken cursor fails the test
        await indexer.index_pending()
        async with engine.connect() as conn:
            upto = (await conn.execute(text("SELECT message_id FROM search_cursor"))).scalar()
            last = (await conn.execute(text("SELECT max(id) FROM messages"))).scalar()
        if upto == last:
            return indexer
    raise AssertionError(f"the indexer stopped at {upto} of {last}")


async def test_on_postgresql_the_planner_left_alone_never_scans_the_messages(store):
    kind, engine = store
    if kind != "postgresql":
        pytest.skip("SQLite always reads FTS5 through its own index (the test above)")
    tickets = TicketStore(engine)
    ticket = await _ticket(tickets, CUSTOMER, "Dużo wiadomości", "opis", "many")
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO messages (ticket_id, seq, author_kind, author_id, author_name, body, client_id, created_at) "
            "SELECT :t, 1 + g, 'customer', 'owner', 'Ola', 'zwykła wiadomość o zamówieniu numer ' || g, "
            "'bulk-' || g, now() FROM generate_series(1, 20000) g"), {"t": ticket.id})
    await _index_everything(engine)
    async with engine.begin() as conn:
        for table_name in ("messages", "tickets", "search_documents"):
            await conn.execute(text(f"ANALYZE {table_name}"))
    async with engine.connect() as conn:
        upto = (await conn.execute(text("SELECT message_id FROM search_cursor"))).scalar()
        reads = SearchStore(engine).statements(parse_query("numer 12345"), limit=20, customer=False,
                                               indexed_upto=upto)
        # (On so small a table the planner may read search_documents whole; the test above
        # shows the GIN index is usable, bench/search.py that it is used at 10 million.)
        for read in reads[:2]:
            plan = "\n".join(r[0] for r in await conn.execute(text("EXPLAIN " + _sql(engine, read))))
            assert "Seq Scan on messages" not in plan, plan
        recent = "\n".join(r[0] for r in await conn.execute(text("EXPLAIN " + _sql(engine, reads[2]))))
        assert "messages_pkey" in recent and "Seq Scan on messages" not in recent, recent
    found = await SearchStore(engine).search(parse_query("numer 12345"), limit=5, customer=False)
    assert [(f.ticket.id, f.seq) for f in found] == [(ticket.id, 12346)]


async def test_on_postgresql_the_indexer_never_skips_a_message_that_commits_late(store):
    kind, engine = store
    if kind != "postgresql":
        pytest.skip("SQLite's triggers index in the writing transaction")
    tickets = TicketStore(engine)
    ticket = await _ticket(tickets, CUSTOMER, "Kolejność", "opis", "late")
    indexer = await _index_everything(engine)
    insert = text("INSERT INTO messages (ticket_id, seq, author_kind, author_id, author_name, body, client_id, "
                  "created_at) VALUES (:t, :seq, 'customer', 'owner', 'Ola', :body, :c, now()) RETURNING id")
    late = await engine.connect()
    try:
        await late.begin()
        ids = {"late-m": (await late.execute(insert, {"t": ticket.id, "seq": 100, "c": "late-m",
                                                      "body": "spóźniona wiadomosczaspozniona"})).scalar()}
        async with engine.begin() as conn:  # a larger id, committed first
            ids["fast-m"] = (await conn.execute(insert, {"t": ticket.id, "seq": 101, "c": "fast-m",
                                                         "body": "szybka wiadomosczaszybka"})).scalar()
        for _ in range(3):
            await indexer.index_pending()
        async with engine.connect() as conn:
            upto = (await conn.execute(text("SELECT message_id FROM search_cursor"))).scalar()
        assert ids["late-m"] < ids["fast-m"]
        assert upto < ids["late-m"]  # the cursor waits for the open transaction
        # Found meanwhile all the same: past the cursor a search reads the messages themselves.
        search = SearchStore(engine)
        assert len(await search.search(parse_query("wiadomosczaszybka"), limit=5, customer=False)) == 1
        await late.commit()
    finally:
        await late.close()
    await _index_everything(engine)
    async with engine.connect() as conn:
        indexed = (await conn.execute(text("SELECT count(*) FROM search_documents WHERE message_id IN "
                                           "(:a, :b)"), {"a": ids["late-m"], "b": ids["fast-m"]})).scalar()
    assert indexed == 2
    assert len(await SearchStore(engine).search(parse_query("wiadomosczaspozniona"), limit=5, customer=False)) == 1
