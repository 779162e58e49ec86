"""The group-commit writer isolates a row the database refuses: only its sender hears
an error (`bad_request`, it will never be stored), every other send of the same batch
commits. Store level, on real SQLite and real PostgreSQL (own schema), with the bad
rows injected straight into the writer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from server.errors import BadRequest, Unavailable
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
CUSTOMER = Principal(Role.customer, "owner", "Ola", shop="shop-w", shop_name="Sklep", plan="standard")
AGENT = Principal(Role.agent, "agent-w", "Agnieszka")
# Refused by the database's driver on both (a lone surrogate cannot be encoded) …
UNENCODABLE = "zepsute \ud800 znaki"
# … and by PostgreSQL itself (text may not hold NUL; SQLite stores it).
NUL = "z zerem \x00 w środku"


@pytest.fixture(params=["sqlite", "postgresql"])
async def stores(request, tmp_path: Path) -> AsyncIterator[tuple[str, MessageWriter, TicketStore, list]]:
    settings = await asyncio.to_thread(fresh_store, request.param, tmp_path, "w")
    engine = create_engine(settings)
    rules = Rules.from_settings(settings)
    announced: list[Committed] = []

    async def on_commit(items: list[Committed]) -> None:
        announced.extend(items)

    writer = MessageWriter(MessageStore(engine), rules.policy.hold, rules.policy.closed_until, on_commit,
                           start=rules.policy.next_response)
    task = asyncio.ensure_future(writer.run())
    try:
        yield request.param, writer, TicketStore(engine), announced
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await engine.dispose()
        await asyncio.to_thread(drop_store, settings)


async def test_one_refused_row_fails_only_its_own_send(stores):
    kind, writer, tickets, announced = stores
    ids = []
    for i in range(3):
        opened = await tickets.open(CUSTOMER, NewTicket(f"Problem {i}", "Opis", "question", {}, f"open-{i}"),
                                    [], NOW)
        ids.append(opened.ticket.id)
    bad = {"bad-encoding": UNENCODABLE} | ({"bad-nul": NUL} if kind == "postgresql" else {})
    sends: dict[str, tuple[Principal, int, str]] = {}
    for n in range(30):
        sends[f"good-{n}"] = (AGENT if n % 2 else CUSTOMER, ids[n % 3], f"wiadomość {n}")
        if n == 10:
            sends["bad-encoding"] = (CUSTOMER, ids[0], UNENCODABLE)
        if n == 20 and "bad-nul" in bad:
            sends["bad-nul"] = (AGENT, ids[1], NUL)
    # All submitted at once: on PostgreSQL they go to the database in one batch.
    waiting = {cid: writer_send(writer, who, ticket, body, cid) for cid, (who, ticket, body) in sends.items()}
    results = dict(zip(waiting, await asyncio.gather(*waiting.values(), return_exceptions=True), strict=True))
    failed = {cid: r for cid, r in results.items() if isinstance(r, BaseException)}
    how = "one batch" if writer.batched else "one transaction each"
    print(f"\n[{kind}] {len(sends)} sends ({how}): "
          f"{len(sends) - len(failed)} stored, failed: {sorted(failed)}")
    assert sorted(failed) == sorted(bad), failed
    for cid, err in failed.items():
        assert isinstance(err, BadRequest), f"{cid}: {err!r} (a refused row is the sender's mistake, not a retry)"
    async with writer.engine.connect() as conn:
        stored = {r.client_id: (r.ticket_id, r.seq, r.body) for r in await conn.execute(
            select(messages.c.client_id, messages.c.ticket_id, messages.c.seq, messages.c.body)
            .where(messages.c.ticket_id.in_(ids)))}
    for cid, (_, ticket, body) in sends.items():
        if cid in bad:
            assert cid not in stored
            continue
        posted = results[cid]
        assert isinstance(posted, Posted) and posted.new
        assert stored[cid] == (ticket, posted.message.seq, body)
    # Gapless; on PostgreSQL in the order they reached the writer (SQLite stores each
    # send in its own transaction, in whatever order they take its lock); each good
    # one announced once.
    for ticket in ids:
        seqs = sorted(s for t, s, _ in stored.values() if t == ticket)
        assert seqs == list(range(1, len(seqs) + 1))
        order = [cid for cid, (_, t, _) in sends.items() if t == ticket and cid not in bad]
        if kind == "postgresql":
            assert sorted(order, key=lambda c: stored[c][1]) == order
    assert sorted(c.message.client_id for c in announced) == sorted(c for c in sends if c not in bad)
    # The writer goes on: a retried good send is answered with the stored seq.
    again = await writer_send(writer, CUSTOMER, ids[0], "wiadomość 0", "good-0")
    assert again.message.seq == results["good-0"].message.seq and not again.new


async def writer_send(writer: MessageWriter, who: Principal, ticket: int, body: str, client_id: str) -> Posted:
    return await writer.post(who, ticket, body, client_id, NOW)


async def test_a_send_that_runs_out_of_time_is_stored_once_and_announced_once(stores):
    """The database does not answer in time (here: the ticket's row is locked by another
    transaction; a hung server looks the same from the writer): the sender hears
    `unavailable`. The batch commits after all once the lock goes; the message is
    announced then, and the sender's retry is answered with the stored seq."""
    kind, writer, tickets, announced = stores
    if not writer.batched:
        pytest.skip("SQLite stores each send in its own transaction, bounded by its lock wait")
    writer.timeout = 0.5
    ticket = (await tickets.open(CUSTOMER, NewTicket("Blokada", "Opis", "question", {}, "open-lock"), [],
                                 NOW)).ticket.id
    async with writer.engine.connect() as holder:
        await holder.execute(select(tickets_table.c.id).where(tickets_table.c.id == ticket).with_for_update())
        started = asyncio.get_running_loop().time()
        with pytest.raises(Unavailable):
            await asyncio.wait_for(writer_send(writer, CUSTOMER, ticket, "czekam", "late-1"), 5)
        took = asyncio.get_running_loop().time() - started
        await holder.rollback()
    # The stuck batch goes on and commits: announced once, its sender's retry gets its seq.
    first = await until(lambda: [c for c in announced if c.message.client_id == "late-1"])
    again = await writer_send(writer, CUSTOMER, ticket, "czekam", "late-1")
    print(f"\n[{kind}] unavailable after {took:.2f} s (timeout 0.5 s); committed late as seq "
          f"{first[0].message.seq}, the retry acked with seq {again.message.seq}")
    assert took < 0.5 + 2
    assert again.message.seq == first[0].message.seq and again.message.body == "czekam"
    await writer_send(writer, CUSTOMER, ticket, "dalej", "late-2")
    assert [c.message.client_id for c in announced if c.message.ticket == ticket] == ["late-1", "late-2"]


async def until(check, timeout: float = 10.0):
    """The first truthy result of `check`, polled until `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (found := check()):
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)  # polling a condition, bounded by the deadline
    return found
