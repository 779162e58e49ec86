"""The hello's batched reads read exactly what each hello alone would (SQLite and PostgreSQL).

Concurrent hellos are what a reconnect storm is: the reads asked for while one is in
flight go together in one statement on PostgreSQL. Each check compares what a batch
hands every caller with the plain single reads of the stores, on a real migrated
database: the shops' tickets, replay pages (two windows of one thread in one batch,
attachments with fresh links), the customers' records (several users of one shop
and one user twice in a batch), and new readers' unread state (cursors, own messages
and private notes left out, one reader twice, a ticket that does not exist).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from server.clock import FixedClock
from server.principal import Principal, Role
from server.settings import Settings
from server.store import models
from server.store.attachments import AttachmentStore
from server.store.db import Pulse, create_engine
from server.store.hello_reads import HelloReads
from server.store.messages import MessageStore
from server.store.models import customers, messages, shops, tickets
from server.store.reads import ReadStore
from server.store.tickets import TicketStore
from tests.conftest import drop_store, fresh_store

SECRET = "hello-reads-secret-0123456789abcdef"
NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
SHOPS = ("shop-a", "shop-b", "shop-c")
PER_SHOP = 4
MESSAGES = 12


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    s = fresh_store(request.param, tmp_path_factory.mktemp("hello-reads"), "hr")
    yield s
    drop_store(s)


class World:
    def __init__(self, engine: AsyncEngine, tmp: Path) -> None:
        self.engine = engine
        self.tickets = TicketStore(engine)
        self.messages = MessageStore(engine)
        self.attachments = AttachmentStore(engine, models.attachments, tmp / "files", SECRET)
        self.errors: list[tuple[str, str]] = []
        self.reads = HelloReads(engine, self.tickets, self.messages, ReadStore(engine), self.attachments,
                                FixedClock(NOW), Pulse(),
                                lambda op, kind: self.errors.append((op, kind)), shop_limit=3)
        self.ticket_ids: dict[str, list[int]] = {}
        self.message_ids: dict[tuple[int, int], int] = {}


@pytest.fixture
async def world(settings: Settings, tmp_path: Path) -> AsyncIterator[World]:
    engine = create_engine(settings)
    w = World(engine, tmp_path)
    async with engine.begin() as conn:
        for shop in SHOPS:
            await conn.execute(insert(shops).values(id=shop, name=shop.upper(), plan="standard", created_at=NOW,
                                                    updated_at=NOW))
            for n in range(PER_SHOP):
                t = await conn.execute(insert(tickets).values(
                    shop_id=shop, created_by="owner", title=f"{shop} {n}", status="open", severity="minor",
                    context={"url": f"/{shop}/{n}"}, last_seq=MESSAGES, last_public_seq=MESSAGES,
                    created_at=NOW + timedelta(minutes=n), updated_at=NOW))
                tid = int(t.inserted_primary_key[0])
                w.ticket_ids.setdefault(shop, []).append(tid)
                for seq in range(1, MESSAGES + 1):
                    m = await conn.execute(insert(messages).values(
                        ticket_id=tid, seq=seq, author_kind="agent" if seq % 2 else "customer", author_id="x",
                        author_name="X", body=f"{tid}/{seq}", client_id=f"{tid}-{seq}",
                        created_at=NOW + timedelta(seconds=seq), internal=seq == 5))
                    w.message_ids[(tid, seq)] = int(m.inserted_primary_key[0])
        first = w.ticket_ids["shop-a"][0]
        for position, name in enumerate(("a.png", "b.pdf")):
            await conn.execute(insert(models.attachments).values(
                id=f"att{position}{uuid.uuid4().hex[:8]}", shop_id="shop-a", ticket_id=first,
                message_id=w.message_ids[(first, 4)], position=position, uploader="c:shop-a:owner", name=name,
                content_type="image/png" if name.endswith("png") else "application/pdf", size=10,
                sha256="0" * 64, created_at=NOW))
    try:
        yield w
    finally:
        async with engine.begin() as conn:
            for table in (models.attachments, customers, messages, tickets, shops):
                await conn.execute(table.delete())
        await engine.dispose()


def customer(shop: str, user: str = "owner", **kw: object) -> Principal:
    return Principal(role=Role.customer, id=user, name=kw.pop("name", user), shop=shop, **kw)  # type: ignore[arg-type]


async def test_the_shops_tickets_read_together_are_each_shops_own(world: World) -> None:
    shops_asked = [*SHOPS, "shop-a", "nobody"]
    together = await asyncio.gather(*(world.reads.shop_tickets(customer(s)) for s in shops_asked))
    for shop, got in zip(shops_asked, together, strict=True):
        alone = await world.tickets.list_for(customer(shop), limit=3)
        assert got == alone  # every column, in ticket_row's order: the JSON context, the plan, the dates
        assert [t.shop_id for t in got] == [shop] * len(got)
    assert [t.id for t in together[0]] == sorted(world.ticket_ids["shop-a"], reverse=True)[:3]
    assert together[0][0].context == {"url": "/shop-a/3"} and together[0][0].shop_name == "SHOP-A"
    assert together[-1] == []
    assert world.errors == []


async def test_replay_pages_read_together_hold_each_window_once_with_its_files(world: World) -> None:
    a0, a1 = world.ticket_ids["shop-a"][:2]
    b0 = world.ticket_ids["shop-b"][0]
    windows = [(a0, 2, 8, 100), (a0, 0, 12, 3), (a1, 6, 12, 100), (b0, 12, 12, 100), (a0, 2, 8, 100),
               (10**9, 0, 5, 100)]
    together = await asyncio.gather(*(world.reads.replay_page(*w) for w in windows))
    for (ticket, after, upto, limit), got in zip(windows, together, strict=True):
        alone = await world.messages.replay_page(ticket, after, upto, limit)
        assert [(m.ticket, m.seq, m.body, m.internal, m.author) for m in got] == \
               [(m.ticket, m.seq, m.body, m.internal, m.author) for m in alone]
        if ticket in world.ticket_ids["shop-a"] + world.ticket_ids["shop-b"]:
            assert [m.seq for m in got] == list(range(after + 1, min(upto, after + limit) + 1))
    with_files = [m for m in together[0] if m.attachments]
    assert [m.seq for m in with_files] == [4]
    assert [f["name"] for f in with_files[0].attachments] == ["a.png", "b.pdf"]  # in the order sent
    assert all(f["url"].startswith("/api/attachments/") and "sig=" in f["url"] for f in with_files[0].attachments)
    assert together[0] == together[4] and together[0] is not together[4]
    assert together[3] == [] and together[5] == []
    assert world.errors == []


async def test_customers_recorded_together_each_get_their_row(world: World) -> None:
    later = NOW + timedelta(hours=2)
    visits = [customer("shop-a", "anna", name="Anna", email="anna@example.com"),
              customer("shop-a", "bartek", name="Bartek"),
              customer("shop-new", "celina", name="Celina", shop_name="Nowy Sklep", plan="priority"),
              customer("shop-a", "anna", name="Anna K.", email="anna@example.com")]
    await asyncio.gather(*(world.reads.touch_customer(p, later) for p in visits))
    async with world.engine.connect() as conn:
        rows = {(r.shop_id, r.user_id): r for r in await conn.execute(select(customers))}
        shop_rows = {r.id: r for r in await conn.execute(select(shops))}
    assert set(rows) == {("shop-a", "anna"), ("shop-a", "bartek"), ("shop-new", "celina")}
    assert rows[("shop-a", "anna")].email == "anna@example.com"
    assert rows[("shop-a", "anna")].name in ("Anna", "Anna K.")  # one of the two hellos' names, no error
    assert rows[("shop-new", "celina")].first_seen_at == later
    assert shop_rows["shop-new"].name == "Nowy Sklep" and shop_rows["shop-new"].plan == "priority"
    # Again, later: the same rows, refreshed, none added.
    again = later + timedelta(hours=1)
    await asyncio.gather(*(world.reads.touch_customer(p, again) for p in visits[:2]))
    async with world.engine.connect() as conn:
        refreshed = {(r.shop_id, r.user_id): r for r in await conn.execute(select(customers))}
    assert set(refreshed) == set(rows)
    assert refreshed[("shop-a", "bartek")].last_seen_at == again
    assert refreshed[("shop-a", "bartek")].first_seen_at == later
    assert world.errors == []


async def test_new_readers_unread_states_read_together_are_each_their_own(world: World) -> None:
    from server.store.models import read_cursors

    a, b = world.ticket_ids["shop-a"], world.ticket_ids["shop-b"]
    async with world.engine.begin() as conn:
        for ticket, reader, seq in ((a[0], "c:shop-a:x", 4), (a[1], "c:shop-a:y", 9), (b[0], "c:shop-b:x", 12)):
            await conn.execute(insert(read_cursors).values(ticket_id=ticket, reader=reader, seq=seq, updated_at=NOW))
    asks = [(customer("shop-a", "x"), [a[0], a[1], a[2]]),  # its own messages are not unread
            (customer("shop-a", "y"), [a[1], a[0], 999_999]),  # a ticket that does not exist: cursor 0, nothing
            (customer("shop-b", "x"), [b[0], b[1]]),  # read to the end in one, nothing read in the other
            (customer("shop-a", "x"), [a[3]]),  # the same reader twice in one batch, other tickets
            (customer("shop-c", "z"), [])]
    got = await asyncio.gather(*(world.reads.unread_state(p, ids) for p, ids in asks))
    alone = ReadStore(world.engine)

    def ordered(state: dict[int, tuple[int, list[int]]]) -> dict[int, tuple[int, list[int]]]:
        return {t: (cursor, sorted(seqs)) for t, (cursor, seqs) in state.items()}  # a set, in either order

    for (principal, ids), state in zip(asks, got, strict=True):
        assert ordered(state) == ordered(await alone.unread_state(principal, ids)), (principal.key, ids)
    # Spot checks against the seeding (customer messages even seqs, seq 5 a private note).
    assert got[0][a[0]] == (4, [7, 9, 11]) and got[1][999_999] == (0, [])
    assert got[1][a[0]] == (0, [1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12])
    assert got[2][b[0]] == (12, []) and got[4] == {}
    assert world.errors == []
