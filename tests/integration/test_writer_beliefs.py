"""The group commit's believed way (`server.store.beliefs`, `commit_sql.TRY`): a batch
decided from what the node believes its tickets' rows hold, stored in one statement
only where the rows still hold that. Store level on real PostgreSQL (own schema): two
writers stand for two nodes; other changes to a ticket go straight to the database.
SQLite stores every send on its own (`MessageStore.post`); the same stories are run
there too and must come out the same."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from server.errors import ClosedTicket, NotFound, Stale
from server.principal import Principal, Role
from server.rules.config import Rules
from server.rules.records import Committed, NewTicket, Posted
from server.store.db import create_engine
from server.store.messages import MessageStore
from server.store.models import messages
from server.store.models import tickets as tickets_table
from server.store.tickets import TicketStore
from server.store.writer import MessageWriter
from tests import services
from tests.conftest import drop_store, fresh_store

NOW = datetime.fromisoformat(services.WORKING_CLOCK)
CUSTOMER = Principal(Role.customer, "owner", "Ola", shop="shop-b", shop_name="Sklep", plan="standard")
AGENT = Principal(Role.agent, "agent-b", "Agnieszka")
OTHER_AGENT = Principal(Role.agent, "agent-c", "Cezary")
# What the reports and the clocks keep of a ticket: must come out the same either way.
KEPT = ("status", "last_seq", "last_public_seq", "first_response_at", "first_responder", "first_response_s",
        "next_responses", "next_response_s", "next_response_breaches", "sla_due_at", "sla_warning_at",
        "sla_started_at", "inbox_rank", "last_message_at")


@dataclass
class Node:
    writer: MessageWriter
    announced: list[Committed]
    task: asyncio.Task[None]


@dataclass
class World:
    kind: str
    tickets: TicketStore
    nodes: list[Node]

    @property
    def engine(self):
        return self.tickets.engine

    async def open(self, title: str) -> int:
        opened = await self.tickets.open(CUSTOMER, NewTicket(title, "Opis", "question", {}, f"open-{title}"), [], NOW)
        return opened.ticket.id

    async def row(self, ticket: int) -> dict:
        async with self.engine.connect() as conn:
            found = (await conn.execute(select(tickets_table).where(tickets_table.c.id == ticket))).mappings().one()
        return dict(found)

    async def seqs(self, ticket: int) -> list[tuple[int, str]]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(messages.c.seq, messages.c.client_id)
                                      .where(messages.c.ticket_id == ticket).order_by(messages.c.seq))
            return [(r.seq, r.client_id) for r in rows]

    async def change(self, ticket: int, **values) -> None:
        """Another path (a status change, a close, another node's work) writes the row."""
        async with self.engine.begin() as conn:
            await conn.execute(update(tickets_table).where(tickets_table.c.id == ticket).values(**values))


@pytest.fixture(params=["sqlite", "postgresql"])
async def world(request, tmp_path: Path) -> AsyncIterator[World]:
    settings = await asyncio.to_thread(fresh_store, request.param, tmp_path, "b")
    engine = create_engine(settings)
    rules = Rules.from_settings(settings)
    nodes: list[Node] = []
    for beliefs in (4096, 4096, 0):  # two nodes believing, one that always locks first
        announced: list[Committed] = []

        async def on_commit(items: list[Committed], into: list[Committed] = announced) -> None:
            into.extend(items)

        writer = MessageWriter(MessageStore(engine), rules.policy.hold, rules.policy.closed_until, on_commit,
                               start=rules.policy.next_response, seconds=rules.policy.working_seconds,
                               beliefs=beliefs)
        nodes.append(Node(writer, announced, asyncio.ensure_future(writer.run())))
    try:
        yield World(request.param, TicketStore(engine), nodes)
    finally:
        for node in nodes:
            node.task.cancel()
        await asyncio.gather(*(node.task for node in nodes), return_exceptions=True)
        await engine.dispose()
        await asyncio.to_thread(drop_store, settings)


def send(node: Node, who: Principal, ticket: int, client_id: str, seen_seq: int | None = None):
    return node.writer.post(who, ticket, f"treść {client_id}", client_id, NOW, seen_seq=seen_seq)


async def test_believed_stores_come_out_as_the_locked_ones_and_stay_believed(world):
    """A conversation stored the believed way leaves the ticket exactly as the locked
    way does (counters, clock, report facts), and after the first read every batch's
    belief holds: the writer believes what its own statement wrote."""
    a, _, locking = world.nodes
    believed, locked = await world.open("believed"), await world.open("locked")
    script = [(CUSTOMER, "c1"), (CUSTOMER, "c2"), (AGENT, "a1"), (CUSTOMER, "c3"), (AGENT, "a2"), (AGENT, "a3"),
              (CUSTOMER, "c4")]
    for who, cid in script:
        mine = await send(a, who, believed, cid)
        theirs = await send(locking, who, locked, cid)
        assert mine.new and theirs.new and mine.message.seq == theirs.message.seq
    one, other = await world.row(believed), await world.row(locked)
    assert {k: one[k] for k in KEPT} == {k: other[k] for k in KEPT}
    assert one["first_responder"] == AGENT.id and one["last_seq"] == len(script)
    assert await world.seqs(believed) == [(n + 1, cid) for n, (_, cid) in enumerate(script)]
    if world.kind == "postgresql":
        assert a.writer.stale == 0, "a belief the writer's own store wrote did not hold"
        assert a.writer.beliefs is not None and a.writer.beliefs.get(believed)["last_seq"] == len(script)


async def test_two_nodes_writing_one_ticket_keep_its_seqs_gapless(world):
    """Node A's belief goes wrong with every message node B stores and the other way
    round: each statement finds the newer row, and the sends are numbered after it.
    First taking turns, then many at once from both."""
    a, b, _ = world.nodes
    ticket = await world.open("both")
    for n in range(10):
        posted = await send(a if n % 2 else b, AGENT if n % 3 else CUSTOMER, ticket, f"turn{n}")
        assert posted.new and posted.message.seq == n + 1
    if world.kind == "postgresql":
        # Each node's first send read the row; each later one found the other's message.
        assert (a.writer.stale, b.writer.stale) == (4, 4)
    sends = [send(a if n % 2 else b, CUSTOMER if n % 3 else AGENT, ticket, f"m{n}") for n in range(60)]
    posted = await asyncio.gather(*sends)
    seqs = await world.seqs(ticket)
    assert [s for s, _ in seqs] == list(range(1, 71))
    assert sorted(p.message.seq for p in posted) == list(range(11, 71))
    assert {cid: s for s, cid in seqs if cid.startswith("m")} == {p.message.client_id: p.message.seq
                                                                 for p in posted}
    assert (await world.row(ticket))["last_seq"] == 70
    # Each node announced what it stored, once.
    announced = [c.message.client_id for node in (a, b) for c in node.announced]
    assert sorted(announced) == sorted([f"turn{n}" for n in range(10)] + [f"m{n}" for n in range(60)])


async def test_a_ticket_closed_elsewhere_refuses_the_next_send(world):
    """The node believes the ticket open; it was closed meanwhile: the send is refused
    as closed, and nothing is stored."""
    a, _, _ = world.nodes
    ticket = await world.open("closing")
    await send(a, CUSTOMER, ticket, "before")
    await world.change(ticket, status="closed", closed_at=NOW)
    with pytest.raises(ClosedTicket):
        await send(a, AGENT, ticket, "after")
    assert await world.seqs(ticket) == [(1, "before")]
    assert (await world.row(ticket))["last_seq"] == 1


async def test_a_refusal_on_a_wrong_belief_is_decided_again(world):
    """The node saw the ticket closed and refused a send; the ticket is reopened
    elsewhere: the next send is not refused from the old belief."""
    a, _, _ = world.nodes
    ticket = await world.open("reopening")
    await world.change(ticket, status="closed", closed_at=NOW)
    with pytest.raises(ClosedTicket):
        await send(a, AGENT, ticket, "refused")
    await world.change(ticket, status="open", closed_at=None)
    posted = await send(a, AGENT, ticket, "accepted")
    assert posted.new and posted.message.seq == 1
    assert await world.seqs(ticket) == [(1, "accepted")]


async def test_a_ticket_purged_after_it_was_believed_is_not_found(world):
    a, _, _ = world.nodes
    ticket = await world.open("purged")
    await send(a, AGENT, ticket, "before")
    async with world.engine.begin() as conn:
        await conn.execute(delete(messages).where(messages.c.ticket_id == ticket))
        await conn.execute(delete(tickets_table).where(tickets_table.c.id == ticket))
    with pytest.raises(NotFound):
        await send(a, AGENT, ticket, "after")
    if world.kind == "postgresql":
        assert a.writer.beliefs is not None and a.writer.beliefs.get(ticket) is None


async def test_a_retried_send_in_a_batch_gets_its_seq_and_the_rest_are_stored(world):
    """A batch that holds a send already stored (a client's retry) and new ones: the
    retry is answered with its stored seq, not stored twice; the others are stored
    after it, gapless."""
    a, _, _ = world.nodes
    first, second = await world.open("retry-1"), await world.open("retry-2")
    original = await send(a, CUSTOMER, first, "r1")
    await send(a, CUSTOMER, second, "s1")
    batch = [send(a, CUSTOMER, first, "r1"), send(a, CUSTOMER, first, "r2"), send(a, AGENT, second, "s2"),
             send(a, CUSTOMER, first, "r1")]
    again, new, other, twice = await asyncio.gather(*batch)
    assert not again.new and again.message.seq == original.message.seq == 1
    assert not twice.new and twice.message.seq == 1
    assert new.new and new.message.seq == 2 and other.new and other.message.seq == 2
    assert await world.seqs(first) == [(1, "r1"), (2, "r2")]
    assert await world.seqs(second) == [(1, "s1"), (2, "s2")]
    # Announced once each, each ticket's in its order (the retry is no news).
    order = [c.message.client_id for c in a.announced]
    assert sorted(order) == ["r1", "r2", "s1", "s2"]
    assert order.index("r1") < order.index("r2") and order.index("s1") < order.index("s2")


async def test_one_wrong_belief_does_not_hold_back_the_batch(world):
    """Twenty tickets in one batch, one of them changed elsewhere: every send is
    stored with the right seq; only that ticket's belief was wrong."""
    a, _, _ = world.nodes
    ids = [await world.open(f"many-{n}") for n in range(20)]
    await asyncio.gather(*(send(a, CUSTOMER, t, f"first-{t}") for t in ids))
    stale_before = a.writer.stale
    # Elsewhere: another node stored a message in the fifth ticket.
    b = world.nodes[1]
    await send(b, AGENT, ids[4], "elsewhere")
    posted = await asyncio.gather(*(send(a, CUSTOMER, t, f"second-{t}") for t in ids))
    for ticket, result in zip(ids, posted, strict=True):
        expected = 3 if ticket == ids[4] else 2
        assert result.new and result.message.seq == expected, (ticket, result.message.seq)
        assert [s for s, _ in await world.seqs(ticket)] == list(range(1, expected + 1))
    if world.kind == "postgresql":
        assert a.writer.stale - stale_before == 1


async def test_a_stale_reply_check_sees_the_other_agents_answer(world):
    """An agent's reply checked against what its console showed (`seen_seq`): another
    agent answered through another node meanwhile; the reply is refused as stale
    even though this node believed the ticket unchanged."""
    a, b, _ = world.nodes
    ticket = await world.open("stale-reply")
    await send(a, CUSTOMER, ticket, "question")
    await send(b, OTHER_AGENT, ticket, "answer-elsewhere")
    with pytest.raises(Stale) as refused:
        await send(a, AGENT, ticket, "late-answer", seen_seq=1)
    assert refused.value.code == "stale"
    assert [cid for _, cid in await world.seqs(ticket)] == ["question", "answer-elsewhere"]
    posted: Posted = await send(a, AGENT, ticket, "informed-answer", seen_seq=2)
    assert posted.message.seq == 3
