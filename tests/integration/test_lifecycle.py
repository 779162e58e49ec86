"""Statuses, silent customers, closing and retention, driven by `jobs --once --at`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis

from tests.conftest import unique
from tests.servers import ROOT, ServerProcess
from tests.wsclient import Client, join


def cli(node: ServerProcess, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "server", *args], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, **node.env, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


async def jobs(node: ServerProcess, at: datetime) -> dict[str, int]:
    return (await asyncio.to_thread(cli, node, "jobs", "--once", "--at", at.isoformat()))["done"]




async def new_ticket(customer: Client, title: str = "Zwrot") -> dict:
    reply = await customer.request({"type": "open_ticket", "title": title, "body": "Opis", "severity": "minor",
                                    "client_id": str(uuid.uuid4())}, "ticket")
    return reply["ticket"]


async def set_status(who: Client, ticket_id: int, status: str) -> dict:
    return await who.request({"type": "update_ticket", "ticket": ticket_id, "status": status}, "ticket")


AGENT_MOVES = [
    ("open", "waiting_on_customer"), ("open", "resolved"), ("open", "closed"),
    ("waiting_on_customer", "open"), ("waiting_on_customer", "resolved"), ("waiting_on_customer", "closed"),
    ("resolved", "open"), ("resolved", "waiting_on_customer"), ("resolved", "closed"),
]


async def reach(agent: Client, ticket_id: int, status: str) -> None:
    if status != "open":
        assert (await set_status(agent, ticket_id, status))["ticket"]["status"] == status


async def test_every_agent_transition_and_closed_is_final(server, clients, tokens, shop):
    customer, _ = await join(server, clients, tokens.customer(shop))
    agent, _ = await join(server, clients, tokens.agent(unique("a")))
    for start, target in AGENT_MOVES:
        ticket = await new_ticket(customer)
        await reach(agent, ticket["id"], start)
        moved = await set_status(agent, ticket["id"], target)
        assert moved["ticket"]["status"] == target, (start, target, moved)
        ending = f"{_label(target)}."
        note = await customer.expect("message", where=lambda m, t=ticket["id"], e=ending: m["ticket"] == t
                                     and m["author"]["kind"] == "system" and "→" in m["body"]
                                     and m["body"].endswith(e))
        assert note
    closed = await new_ticket(customer)
    await reach(agent, closed["id"], "closed")
    for target in ("open", "waiting_on_customer", "resolved"):
        refused = await set_status(agent, closed["id"], target)
        assert refused["code"] == "closed_ticket"
    refused = await agent.request({"type": "update_ticket", "ticket": closed["id"], "severity": "major"}, "ticket")
    assert refused["code"] == "closed_ticket"


def _label(status: str) -> str:
    return {"open": "otwarte", "waiting_on_customer": "czeka na klienta", "resolved": "rozwiązane",
            "closed": "zamknięte"}[status]


@pytest.mark.parametrize("start,target,allowed", [
    ("open", "resolved", True), ("waiting_on_customer", "resolved", True),
    ("open", "closed", False), ("open", "waiting_on_customer", False), ("resolved", "open", False),
])
async def test_what_a_customer_may_do_with_its_ticket(server, clients, tokens, shop, start, target, allowed):
    customer, _ = await join(server, clients, tokens.customer(shop))
    agent, _ = await join(server, clients, tokens.agent(unique("a")))
    ticket = await new_ticket(customer)
    await reach(agent, ticket["id"], start)
    reply = await set_status(customer, ticket["id"], target)
    if allowed:
        assert reply["ticket"]["status"] == target
    else:
        assert reply["code"] == "forbidden"


@pytest.mark.parametrize("start", ["waiting_on_customer", "resolved"])
async def test_a_customer_message_returns_the_ticket_to_support(server, clients, tokens, shop, start):
    customer, _ = await join(server, clients, tokens.customer(shop))
    agent, _ = await join(server, clients, tokens.agent(unique("a")))
    ticket = await new_ticket(customer)
    await agent.request({"type": "follow", "ticket": ticket["id"]}, "ticket")
    await reach(agent, ticket["id"], start)
    ack = await customer.request({"type": "send", "ticket": ticket["id"], "body": "Nadal nie działa"}, "ack")
    reopened = await agent.expect("ticket", where=lambda f: f["ticket"]["id"] == ticket["id"]
                                  and f["ticket"]["status"] == "open")
    assert reopened["ticket"]["waiting_since"] is None
    note = await agent.expect("message", seq=ack["seq"] + 1)
    assert note["author"]["kind"] == "system"


async def test_a_silent_customer_gets_two_reminders_then_the_ticket_resolves_and_closes(at_clock, clients):
    node, tokens = at_clock("2026-03-02T10:00:00+01:00")
    shop = unique("shop")
    customer, _ = await join(node, clients, tokens.customer(shop))
    ticket = await new_ticket(customer, "Brak odpowiedzi")
    agent, _ = await join(node, clients, tokens.agent(unique("a")))
    waiting = (await set_status(agent, ticket["id"], "waiting_on_customer"))["ticket"]
    since = datetime.fromisoformat(waiting["waiting_since"])
    second = timedelta(seconds=1)

    async def state() -> dict:
        return (await agent.request({"type": "follow", "ticket": ticket["id"]}, "ticket"))["ticket"]

    async def system_notes() -> list[str]:
        page = await customer.request({"type": "history", "ticket": ticket["id"], "limit": 200}, "history")
        return [m["body"] for m in page["messages"] if m["author"]["kind"] == "system"]

    baseline = len(await system_notes())
    steps = [(timedelta(days=14), "lifecycle.remind", 1), (timedelta(days=17), "lifecycle.remind", 2)]
    for offset, job, reminders in steps:
        assert (await jobs(node, since + offset - second))[job] == 0
        first, again = await asyncio.gather(jobs(node, since + offset), jobs(node, since + offset))
        assert first[job] + again[job] == 1, "exactly once with two workers"
        assert (await state())["reminders_sent"] == reminders
    assert (await jobs(node, since + timedelta(days=21) - second))["lifecycle.resolve_silent"] == 0
    assert (await jobs(node, since + timedelta(days=21)))["lifecycle.resolve_silent"] == 1
    resolved = await state()
    assert resolved["status"] == "resolved"
    notes = (await system_notes())[baseline:]
    assert len(notes) == 3 and "przypomina" in notes[1].lower() and "rozwiązane" in notes[2]
    resolved_at = datetime.fromisoformat(resolved["resolved_at"])
    assert (await jobs(node, resolved_at + timedelta(days=7) - second))["lifecycle.close_resolved"] == 0
    assert (await jobs(node, resolved_at + timedelta(days=7)))["lifecycle.close_resolved"] == 1
    assert (await state())["status"] == "closed"
    assert (await jobs(node, resolved_at + timedelta(days=8)))["lifecycle.close_resolved"] == 0


async def test_any_customer_message_stops_the_reminder_chain(at_clock, clients):
    node, tokens = at_clock("2026-03-02T10:00:00+01:00")
    customer, _ = await join(node, clients, tokens.customer(unique("shop")))
    ticket = await new_ticket(customer)
    agent, _ = await join(node, clients, tokens.agent(unique("a")))
    since = datetime.fromisoformat((await set_status(agent, ticket["id"], "waiting_on_customer"))["ticket"][
        "waiting_since"])
    assert (await jobs(node, since + timedelta(days=14)))["lifecycle.remind"] == 1
    await customer.request({"type": "send", "ticket": ticket["id"], "body": "Już odpisuję"}, "ack")
    done = await jobs(node, since + timedelta(days=30))
    assert done["lifecycle.remind"] == 0 and done["lifecycle.resolve_silent"] == 0
    state = (await agent.request({"type": "follow", "ticket": ticket["id"]}, "ticket"))["ticket"]
    assert state["status"] == "open" and state["reminders_sent"] == 0


async def redis_keys_about(node: ServerProcess, ticket_id: int) -> list[str]:
    client = aioredis.Redis.from_url(node.env["REDIS_URL"])
    try:
        found = []
        async for key in client.scan_iter(match=node.env["POMOC_REDIS_PREFIX"] + "*", count=1000):
            name = key.decode()
            if name.endswith(f":{ticket_id}"):
                found.append(name)
            elif name.split(":")[-2:-1] == ["unread"] or ":unread:" in name:
                fields = await client.hkeys(name) if await client.type(name) == b"hash" else []
                found += [f"{name}#{f.decode()}" for f in fields if f.decode().endswith(f":{ticket_id}")]
        return found
    finally:
        await client.aclose()


async def test_a_ticket_closed_on_1_march_is_listed_on_29_may_and_gone_on_31_may(at_clock, clients):
    node, tokens = at_clock("2026-03-01T10:00:00+01:00")
    shop = unique("shop")
    token = tokens.customer(shop)
    customer, _ = await join(node, clients, token)
    ticket = await new_ticket(customer, "Stare zgłoszenie")
    keep = await new_ticket(customer, "Otwarte dalej")
    agent, _ = await join(node, clients, tokens.agent(unique("a")))
    await agent.request({"type": "send", "ticket": ticket["id"], "body": "Załatwione"}, "ack")
    await agent.request({"type": "read", "ticket": ticket["id"], "seq": 2}, "unread")
    await set_status(agent, ticket["id"], "closed")
    await customer.expect("unread", where=lambda f: f["tickets"].get(str(ticket["id"]), 0) > 0)
    assert await redis_keys_about(node, ticket["id"]), "the ticket has Redis state before the purge"

    may_29 = datetime(2026, 5, 29, 12, 0, tzinfo=UTC)
    plan = await asyncio.to_thread(cli, node, "purge", "--dry-run", "--at", may_29.isoformat())
    assert ticket["id"] not in plan["ticket_ids"]
    assert (await jobs(node, may_29))["retention.purge"] == 0
    late, late_tokens = at_clock("2026-05-29T12:00:00+02:00")
    viewer, welcome = await join(late, clients, late_tokens.customer(shop))
    assert ticket["id"] in [t["id"] for t in welcome["tickets"]]
    history = await viewer.request({"type": "history", "ticket": ticket["id"]}, "history")
    assert "Załatwione" in [m["body"] for m in history["messages"]]

    may_31 = datetime(2026, 5, 31, 12, 0, tzinfo=UTC)
    plan = await asyncio.to_thread(cli, node, "purge", "--dry-run", "--at", may_31.isoformat())
    assert plan["ticket_ids"] == [ticket["id"]] or ticket["id"] in plan["ticket_ids"]
    done = await asyncio.to_thread(cli, node, "purge", "--at", may_31.isoformat())
    assert done["ticket_ids"] == plan["ticket_ids"] and done["deleted_messages"] == plan["messages"]
    assert await redis_keys_about(node, ticket["id"]) == []
    after, welcome = await join(late, clients, late_tokens.customer(shop))
    assert [t["id"] for t in welcome["tickets"]] == [keep["id"]]
    gone = await after.request({"type": "history", "ticket": ticket["id"]}, "history")
    assert gone["code"] == "forbidden"  # to a customer, gone is no different from another shop's
    again = await asyncio.to_thread(cli, node, "purge", "--at", may_31.isoformat())
    assert again["tickets"] == 0, "idempotent"


async def test_export_and_erase_a_shop(at_clock, clients):
    node, tokens = at_clock("2026-03-02T10:00:00+01:00")
    shop = unique("shop")
    customer, _ = await join(node, clients, tokens.customer(shop, email="ola@sklep.pl"))
    tickets = [await new_ticket(customer, title) for title in ("Jeden", "Dwa")]
    exported = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "server", "export-shop", shop],
                                       cwd=ROOT, capture_output=True, text=True,
                                       env={**os.environ, **node.env, "PYTHONPATH": str(ROOT)})
    data = json.loads(exported.stdout)
    assert [t["id"] for t in data["tickets"]] == [t["id"] for t in tickets]
    assert data["tickets"][0]["messages"][0]["body"] == "Opis" and data["customers"][0]["email"] == "ola@sklep.pl"
    unconfirmed = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "server", "erase-shop", shop],
                                          cwd=ROOT, capture_output=True, text=True,
                                          env={**os.environ, **node.env, "PYTHONPATH": str(ROOT)})
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
    erased = await asyncio.to_thread(cli, node, "erase-shop", shop, "--yes")
    assert erased["tickets"] == 2
    for ticket in tickets:
        assert await redis_keys_about(node, ticket["id"]) == []
    empty = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "server", "export-shop", shop],
                                    cwd=ROOT, capture_output=True, text=True,
                                    env={**os.environ, **node.env, "PYTHONPATH": str(ROOT)})
    assert empty.returncode == 1
