"""The reaction clock of every step and the plans, end to end, on SQLite and on
PostgreSQL (both with real Redis): servers whose clock starts at a chosen instant
(POMOC_CLOCK), jobs run by `python -m server jobs --once --at …` processes, a real
webhook receiver."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from tests.conftest import Tokens, unique
from tests.integration.test_time_rules import near, open_ticket, run_jobs
from tests.receiver import Receiver
from tests.servers import ServerProcess
from tests.wsclient import Client, join

WEDNESDAY = "2026-11-18T10:00:00+01:00"
SUNDAY_NOON = "2026-11-22T12:00:00+01:00"
SATURDAY_NIGHT = "2026-11-21T23:30:00+01:00"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver().start()
    yield hook
    hook.stop()


@pytest.fixture
def clock_with_hook(at_clock, receiver):
    def start(clock: str, **extra: str) -> tuple[ServerProcess, Tokens]:
        return at_clock(clock, None, POMOC_WEBHOOK_URL=receiver.url, POMOC_WEBHOOK_SECRET="hook-secret", **extra)

    return start


async def inbox(agent: Client, mine: set[int]) -> list[dict]:
    """The agent's inbox, in its order, for this test's tickets (the database is shared)."""
    listed = await agent.request({"type": "list_tickets", "department": "*", "limit": 500}, "tickets")
    return [t for t in listed["tickets"] if t["id"] in mine]


def later(iso: str, seconds: float) -> str:
    return (datetime.fromisoformat(iso) + timedelta(seconds=seconds)).isoformat()


async def test_a_customers_follow_up_to_an_answered_ticket_gets_its_own_deadline_and_breach(
        clock_with_hook, clients, receiver):
    node, tokens = clock_with_hook(WEDNESDAY)
    customer, _ = await join(node, clients, tokens.customer(unique("shop")))
    urgent, _ = await open_ticket(customer, "major", "Płatności stoją")  # 24 working hours
    routine, _ = await open_ticket(customer, "minor", "Faktury")  # 4 working days
    waiting, _ = await open_ticket(customer, "major", "Kurier")
    mine = {urgent["id"], routine["id"], waiting["id"]}
    assert urgent["sla_step"] == "first_response" and near(urgent["sla_due_at"], "2026-11-23T09:00:00+00:00")
    agent, _ = await join(node, clients, tokens.agent(unique("a")))
    assert [t["id"] for t in await inbox(agent, mine)] == [urgent["id"], waiting["id"], routine["id"]]

    # The agent answers: nothing is due from support on that ticket any more.
    await agent.request({"type": "send", "ticket": urgent["id"], "body": "Sprawdzamy bramkę"}, "ack")
    answered = (await agent.request({"type": "follow", "ticket": urgent["id"]}, "ticket"))["ticket"]
    assert answered["sla_due_at"] is None and answered["sla_step"] is None
    assert near(answered["first_response_due_at"], "2026-11-23T09:00:00+00:00")  # kept for the record
    assert [t["id"] for t in await inbox(agent, mine)] == [waiting["id"], routine["id"], urgent["id"]]

    # Waiting on the customer: no deadline runs either.
    moved = await agent.request({"type": "update_ticket", "ticket": waiting["id"], "status": "waiting_on_customer"},
                                "ticket")
    assert moved["ticket"]["sla_due_at"] is None and moved["ticket"]["sla_step"] is None

    # The customer writes again (twice): one new deadline, counted from the first of them.
    again = await customer.request({"type": "send", "ticket": urgent["id"], "body": "Nadal nie działa"}, "ack")
    await customer.request({"type": "send", "ticket": urgent["id"], "body": "Zrzut ekranu w załączniku"}, "ack")
    rows = await inbox(agent, mine)
    now_due = next(t for t in rows if t["id"] == urgent["id"])
    assert now_due["sla_step"] == "next_response"
    assert near(now_due["sla_due_at"], "2026-11-23T09:00:00+00:00", seconds=120)
    assert datetime.fromisoformat(now_due["sla_due_at"]) - datetime.fromisoformat(again["created_at"]) == (
        timedelta(days=5))  # Wed 10:00 + 24 working hours = Mon 10:00
    assert [t["id"] for t in rows] == [urgent["id"], routine["id"], waiting["id"]]
    # The customer's own view says which deadline runs, too.
    mine_view = await customer.request({"type": "follow", "ticket": urgent["id"]}, "ticket")
    assert mine_view["ticket"]["sla_step"] == "next_response"

    def events(ticket_id: int) -> list[tuple[str, str]]:
        return [(c.json["event"], c.json["step"]) for c in receiver.requests if c.json.get("ticket_id") == ticket_id]

    due = now_due["sla_due_at"]
    await run_jobs(node, later(due, -1))
    assert events(urgent["id"]) == [("sla.warning", "next_response")]  # 2 working hours after the follow-up
    await run_jobs(node, later(due, 1))
    await run_jobs(node, later(due, 60))
    assert events(urgent["id"]) == [("sla.warning", "next_response"), ("sla.breached", "next_response")]
    breach = next(c.json for c in receiver.requests if c.json.get("ticket_id") == urgent["id"]
                  and c.json["event"] == "sla.breached")
    assert breach["sla_due_at"] == due and breach["severity"] == "major"
    # The ticket waiting on the customer never escalated.
    assert events(waiting["id"]) == []


async def test_a_priority_ticket_on_sunday_reaches_an_agent_at_once_and_comes_first(clock_with_hook, clients):
    node, tokens = clock_with_hook(SUNDAY_NOON)
    agent, _ = await join(node, clients, tokens.agent(unique("a")))
    standard, standard_welcome = await join(node, clients, tokens.customer(unique("shop")))
    priority, priority_welcome = await join(node, clients, tokens.customer(unique("vip"), plan="priority"))
    assert standard_welcome["service"]["open"] is False and priority_welcome["service"]["open"] is True
    assert [0, 1, 2, 3, 4, 5, 6] in [r["days"] for r in priority_welcome["hours"]]

    waits, (_, waits_ack) = await open_ticket(standard, "major", "Zwroty")
    assert waits["queued_until"] == "2026-11-23T08:00:00+00:00" and "Plan standardowy" in waits_ack["body"]
    urgent, _ = await open_ticket(standard, "critical", "Sklep nie sprzedaje")  # critical: 24/7 on any plan
    vip, (_, vip_ack) = await open_ticket(priority, "minor", "Kody rabatowe")
    assert vip["queued_until"] is None
    assert "Plan priorytetowy" in vip_ack["body"] and "niedziele i święta" in vip_ack["body"]
    await agent.expect("ticket", where=lambda f: f["ticket"]["id"] == vip["id"])
    # minor = 4 working days on the priority calendar (every day): Thursday 12:00, not the next Friday.
    assert near(vip["sla_due_at"], "2026-11-26T11:00:00+00:00")
    rows = await inbox(agent, {waits["id"], urgent["id"], vip["id"]})
    # Priority first, even before a standard critical ticket due sooner.
    assert [t["id"] for t in rows] == [vip["id"], urgent["id"], waits["id"]]
    assert rows[0]["plan"] == "priority"


async def test_the_queue_releases_priority_tickets_first(clock_with_hook, clients):
    node, tokens = clock_with_hook(SATURDAY_NIGHT)
    standard, _ = await join(node, clients, tokens.customer(unique("shop")))
    priority, _ = await join(node, clients, tokens.customer(unique("vip"), plan="priority"))
    first, _ = await open_ticket(standard, "major", "Wysyłki")
    second, _ = await open_ticket(priority, "minor", "Logo")
    assert first["queued_until"] == "2026-11-23T08:00:00+00:00"
    assert second["queued_until"] == "2026-11-22T08:00:00+00:00"  # the priority plan opens on Sunday
    agent, _ = await join(node, clients, tokens.agent(unique("a")))
    await run_jobs(node, "2026-11-23T09:00:00+01:00")  # both due: the worker was away on Sunday
    mine = {first["id"], second["id"]}
    released = [await agent.expect("ticket", where=lambda f: f["ticket"]["id"] in mine and
                                   f["ticket"]["queued_until"] is None) for _ in range(2)]
    assert [f["ticket"]["id"] for f in released] == [second["id"], first["id"]]


async def test_the_same_day_rule(clock_with_hook, clients):
    node, tokens = clock_with_hook(WEDNESDAY, POMOC_SAME_DAY_CUTOFF="16:00")
    customer, _ = await join(node, clients, tokens.customer(unique("shop")))
    ticket, (_, ack) = await open_ticket(customer, "question", "Jak ustawić kupon")
    assert near(ticket["sla_due_at"], "2026-11-18T16:00:00+00:00", seconds=1)  # 17:00 today, not in 7 working days
    assert "przed 16:00" in ack["body"] and "do środy 18.11, 17:00" in ack["body"]


def test_a_bad_plan_setting_is_refused_at_startup(tmp_path):
    import os
    import subprocess
    import sys

    from tests.servers import ROOT

    env = {k: v for k, v in os.environ.items() if not k.startswith("POMOC_")}
    env.update(PYTHONPATH=str(ROOT), POMOC_PLANS="gold: daily")
    run = subprocess.run([sys.executable, "-m", "server", "calendar", "--days", "1"], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert run.returncode == 2 and "POMOC_PLANS" in run.stderr


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_the_agents_inbox_reads_in_index_order(kind, tmp_path):
    """Priority first and by deadline, and still a walk down ix_tickets_inbox: no sort."""
    import asyncio

    from sqlalchemy import event

    from server.principal import Principal, Role
    from server.store.db import create_engine
    from server.store.tickets import TicketStore
    from tests.conftest import drop_store, fresh_store

    settings = await asyncio.to_thread(fresh_store, kind, tmp_path, "inbox")
    engine = create_engine(settings)
    seen: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001 - SQLAlchemy's hook
        if "ORDER BY tickets.inbox_rank" in statement:
            seen.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        await TicketStore(engine).list_for(Principal(Role.agent, "a1", "Agnieszka"), limit=50, department="*")
        ((statement, parameters),) = seen
        async with engine.connect() as conn:
            if kind == "sqlite":
                # SQLite plans by its statistics: an inbox's worth of tickets, mostly active.
                await conn.exec_driver_sql("INSERT INTO shops (id, name, plan, created_at, updated_at) "
                                           "VALUES ('s', 'S', 'standard', '2026-11-18', '2026-11-18')")
                for i in range(400):
                    await conn.exec_driver_sql(
                        "INSERT INTO tickets (shop_id, created_by, title, status, severity, context, last_seq, "
                        "created_at, updated_at, sla_due_at, inbox_rank) VALUES ('s', 'u', 't', ?, 'minor', '{}', "
                        "0, '2026-11-18', '2026-11-18', '2026-11-20', 1)", ("closed" if i % 10 == 0 else "open",))
                await conn.exec_driver_sql("ANALYZE")
                plan = (await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)).all()
                text = " ".join(str(r[-1]) for r in plan)
                assert "ix_tickets_inbox" in text and "TEMP B-TREE" not in text, text
            else:
                await conn.exec_driver_sql("SET enable_seqscan = off")
                await conn.exec_driver_sql("SET enable_sort = off")
                plan = (await conn.exec_driver_sql("EXPLAIN " + statement, parameters)).all()
                text = " ".join(r[0] for r in plan)
                assert "ix_tickets_inbox" in text and "Sort" not in text, text
    finally:
        await engine.dispose()
        await asyncio.to_thread(drop_store, settings)


async def test_a_private_note_is_no_answer_the_customers_deadline_runs_on(clock_with_hook, clients):
    node, tokens = clock_with_hook(WEDNESDAY)
    customer, _ = await join(node, clients, tokens.customer(unique("shop")))
    ticket, _ = await open_ticket(customer, "major", "Zwroty")
    agent, _ = await join(node, clients, tokens.agent(unique("a")))
    await agent.request({"type": "send", "ticket": ticket["id"], "body": "Sprawdzę to", "internal": True}, "ack")
    first = (await agent.request({"type": "follow", "ticket": ticket["id"]}, "ticket"))["ticket"]
    assert first["sla_step"] == "first_response" and first["sla_due_at"] == ticket["sla_due_at"]
    assert first["first_response_at"] is None

    # Answered, then the customer writes again: a note does not stop the new deadline either.
    await agent.request({"type": "send", "ticket": ticket["id"], "body": "Proszę o numer zamówienia"}, "ack")
    await customer.request({"type": "send", "ticket": ticket["id"], "body": "Zamówienie 1234"}, "ack")
    running = (await inbox(agent, {ticket["id"]}))[0]
    assert running["sla_step"] == "next_response"
    await agent.request({"type": "send", "ticket": ticket["id"], "body": "Klient czeka na zwrot", "internal": True},
                        "ack")
    after_note = (await inbox(agent, {ticket["id"]}))[0]
    assert after_note["sla_step"] == "next_response" and after_note["sla_due_at"] == running["sla_due_at"]
