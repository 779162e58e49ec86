"""Workers releasing the off-hours queue at once release each ticket together with
its held messages, exactly once, by one of them: never a ticket by one worker and
its messages (or part of them) by another. Store level, real SQLite and real
PostgreSQL (own schema), the workers on engines of their own (as separate processes
would be)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from server.principal import Principal, Role
from server.rules.records import SYSTEM, Author, NewTicket
from server.settings import Settings
from server.store.db import create_engine
from server.store.queue import Released, release_due
from server.store.rows import append_message
from server.store.tickets import TicketStore
from tests.conftest import drop_store, fresh_store

SATURDAY = datetime.fromisoformat("2026-11-21T12:00:00+01:00")
MONDAY = datetime.fromisoformat("2026-11-23T09:00:00+01:00")
WORKERS = 4
TICKETS = 60
HELD = 4  # held messages per ticket


@pytest.fixture(params=["sqlite", "postgresql"])
async def settings(request, tmp_path: Path) -> AsyncIterator[Settings]:
    # Migrations run their own event loop: in a thread, beside this test's.
    settings = await asyncio.to_thread(fresh_store, request.param, tmp_path, "q")
    yield settings
    await asyncio.to_thread(drop_store, settings)


async def queue_tickets(settings: Settings, count: int) -> tuple[set[int], int]:
    """Tickets opened on Saturday, held with their messages until Monday; and a ticket
    that is not queued (an agent handles it) with one follow-up held alone."""
    engine = create_engine(settings)
    try:
        store = TicketStore(engine)
        who = Principal(Role.customer, "live", "Ola", shop="shop-live", shop_name="Sklep")
        live = (await store.open(who, NewTicket("Na żywo", "Opis", "question", {}, "open-live"),
                                 [(Author.of(who), "Opis")], SATURDAY)).ticket.id
        async with engine.begin() as conn:
            await append_message(conn, live, Author.of(who), "i jeszcze", "held-alone", SATURDAY, MONDAY)
        ids = set()
        for i in range(count):
            who = Principal(Role.customer, f"u{i}", "Ola", shop=f"shop-{i % 7}", shop_name="Sklep")
            new = NewTicket(f"Pytanie {i}", "Opis", "question", {}, f"open-{i}", queued_until=MONDAY,
                            sla_due_at=MONDAY + timedelta(days=7))
            first = [(Author.of(who), "Opis"), *((SYSTEM, f"notatka {k}") for k in range(HELD - 1))]
            opened = await store.open(who, new, first, SATURDAY - timedelta(minutes=count - i))
            ids.add(opened.ticket.id)
        return ids, live
    finally:
        await engine.dispose()


async def worker(settings: Settings) -> list[Released]:
    """One worker's release job at the opening, run until nothing is due."""
    engine = create_engine(settings)
    try:
        rounds = []
        while True:
            released = await release_due(engine, MONDAY, batch=10)
            if not released.tickets and not released.messages:
                return rounds
            rounds.append(released)
    finally:
        await engine.dispose()


async def test_concurrent_workers_release_each_ticket_with_its_messages_once(settings):
    ids, live = await queue_tickets(settings, TICKETS)
    results = await asyncio.gather(*(worker(settings) for _ in range(WORKERS)))
    ticket_by: dict[int, list[int]] = {}
    messages_by: dict[int, dict[int, list[int]]] = {}  # ticket → worker → seqs
    for n, rounds in enumerate(results):
        for released in rounds:
            for ticket_id in released.tickets:
                ticket_by.setdefault(ticket_id, []).append(n)
            for ticket_id, seq in released.messages:
                messages_by.setdefault(ticket_id, {}).setdefault(n, []).append(seq)
    alone = messages_by.pop(live, {})
    split = {t: sorted(w) for t, w in messages_by.items() if len(w) > 1 or set(w) != set(ticket_by.get(t, []))}
    work = [sum(len(r.tickets) + len(r.messages) for r in rounds) for rounds in results]
    print(f"\n[{settings.database_url.split(':')[0]}] {WORKERS} workers released {TICKETS} tickets x {HELD} "
          f"held messages: per worker {work}; tickets released apart from their messages: {len(split)}")
    assert set(ticket_by) == ids and all(len(w) == 1 for w in ticket_by.values()), "each ticket once"
    assert all(sorted(s for seqs in messages_by[t].values() for s in seqs) == list(range(1, HELD + 1))
               for t in ids), "each held message once"
    assert not split, f"a ticket and its messages were released by different workers: {dict(list(split.items())[:5])}"
    assert [s for seqs in alone.values() for s in seqs] == [2], "a follow-up held alone is released once"
