"""Private notes, tried as two agents and a customer would, on two real server nodes:
a note reaches every agent (live, history, resume) and never the customer (live on
either node, history, resume, welcome, unread, the shop's export); the automatic
notes about assignment, severity and department are notes too.

Modes: two nodes sharing real Redis, and the embedded stand-in (one process serving
as both nodes), each on SQLite and PostgreSQL (the module's `db_kind`).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
import redis.asyncio as aioredis

from tests import services
from tests.conftest import Tokens, unique
from tests.integration.test_mail_replies import DELAY, gone, reply
from tests.mailing import open_ticket as open_mailed
from tests.mailing import run_jobs
from tests.servers import ROOT, ServerProcess
from tests.wsclient import Client, Frame, join

NOTE = "Klient ma stare klucze P24 – nie pisać mu o tym wprost"


@pytest.fixture(scope="module", params=["redis", "embedded"])
def nodes(request: pytest.FixtureRequest, server_env: dict[str, str],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    tmp = tmp_path_factory.mktemp(f"notes-{request.param}")
    env = {**server_env, "POMOC_REDIS_PREFIX": f"{services.REDIS_PREFIX}{uuid.uuid4().hex[:6]}:"}
    if request.param == "embedded":
        node = ServerProcess({**env, "REDIS_URL": "memory://"}, log_path=tmp / "embedded.log").start()
        yield [node, node]
        node.stop(signal.SIGKILL)
        return
    started = [ServerProcess(dict(env), log_path=tmp / f"node-{i}.log").start() for i in range(2)]
    yield started
    for node in started:
        node.stop(signal.SIGKILL)


async def opened(customer: Client, title: str = "Płatności Przelewy24") -> dict:
    reply = await customer.request({"type": "open_ticket", "title": title, "body": "Płatność nie przechodzi",
                                    "client_id": str(uuid.uuid4())}, "ticket")
    assert reply["type"] == "ticket", reply
    ticket = reply["ticket"]
    for seq in range(1, ticket["last_seq"] + 1):  # the first messages come with the answer
        await customer.expect("message", ticket=ticket["id"], seq=seq)
    return ticket


def first(ticket: dict) -> list[int]:
    """The seqs of a new ticket's first messages (the description, the acknowledgment,
    perhaps a request for missing facts)."""
    return list(range(1, ticket["last_seq"] + 1))


async def settle(client: Client) -> None:
    """Everything the server queued for this client before now has arrived (a ping's
    answer comes after it on the same connection)."""
    assert (await client.request({"type": "ping"}, "pong"))["type"] == "pong"


def bodies(client: Client, ticket_id: int) -> list[str]:
    return [f["body"] for f in client.pending("message") if f["ticket"] == ticket_id]


async def test_a_note_reaches_every_agent_and_never_the_customer(nodes, clients, tokens: Tokens) -> None:
    a, b = nodes
    shop = unique("shop")
    token = tokens.customer(shop)
    tab_a, _ = await join(a, clients, token)
    tab_b, _ = await join(b, clients, token)
    ticket = await opened(tab_a)
    tid, key = ticket["id"], str(ticket["id"])
    anna, _ = await join(a, clients, tokens.agent(unique("anna"), name="Anna"))
    bartek, _ = await join(b, clients, tokens.agent(unique("bartek"), name="Bartek"))
    for agent in (anna, bartek):
        await agent.request({"type": "follow", "ticket": tid}, "ticket")
    await bartek.request({"type": "read", "ticket": tid, "seq": ticket["last_seq"]}, "unread")
    for seq in first(ticket):
        await tab_b.expect("message", ticket=tid, seq=seq)
    await tab_a.send({"type": "read", "ticket": tid, "seq": ticket["last_seq"]})
    for tab in (tab_a, tab_b):
        await tab.expect("unread", where=lambda f: f["tickets"].get(key) == 0)
    for client in (tab_a, tab_b):
        client.drop()
    before = ticket["last_seq"]

    note = await anna.request({"type": "send", "ticket": tid, "body": NOTE, "internal": True, "client_id": "n1"},
                              "ack")
    assert note["type"] == "ack" and note["internal"] is True and note["seq"] == before + 1
    live = await bartek.expect("message", ticket=tid, seq=note["seq"])
    assert live["internal"] is True and live["body"] == NOTE and live["author"]["name"] == "Anna"
    # A colleague's note is news to the other agents like any agent message.
    await bartek.expect("unread", where=lambda f: f["tickets"].get(key) == 1)
    reply = await anna.request({"type": "send", "ticket": tid, "body": "Proszę wygenerować nowe klucze.",
                                "client_id": "r1"}, "ack")
    assert "internal" not in reply
    for tab in (tab_a, tab_b):
        got = await tab.expect("message", ticket=tid, seq=reply["seq"])
        assert "internal" not in got
        await tab.expect("unread", where=lambda f: f["tickets"].get(key) == 1)
        await settle(tab)
        assert bodies(tab, tid) == [], "only the public reply, once"
        assert not [f for f in tab.frames if NOTE in json.dumps(f, ensure_ascii=False)]
        assert not [f for f in tab.pending("unread") if f["tickets"].get(key, 0) > 1], "a note is never unread"

    # History: the agents' has the note, marked; the customer's does not.
    agent_page = await bartek.request({"type": "history", "ticket": tid}, "history")
    assert [(m["seq"], m.get("internal", False)) for m in agent_page["messages"]][-2:] == [
        (note["seq"], True), (reply["seq"], False)]
    customer_page = await tab_b.request({"type": "history", "ticket": tid}, "history")
    assert NOTE not in json.dumps(customer_page, ensure_ascii=False)
    assert [m["seq"] for m in customer_page["messages"]] == [*first(ticket), reply["seq"]]
    assert not any("internal" in m for m in customer_page["messages"])
    older = await tab_b.request({"type": "history", "ticket": tid, "after_seq": before}, "history")
    assert [m["seq"] for m in older["messages"]] == [reply["seq"]]

    # A note after the last public message: the customer's welcome and ticket views
    # end at the public reply; an agent's at the note.
    tail = await anna.request({"type": "send", "ticket": tid, "body": NOTE + " (2)", "internal": True}, "ack")
    await bartek.expect("message", ticket=tid, seq=tail["seq"])

    # Resume on the other node, from before the note: exactly the public reply, once.
    again, welcome = await join(b, clients, token, resume={key: before})
    listed = next(t for t in welcome["tickets"] if t["id"] == tid)
    assert listed["last_seq"] == reply["seq"] and welcome["unread"] == {key: 1} and welcome["badge"] is True
    assert NOTE not in json.dumps(welcome, ensure_ascii=False)
    await again.expect("message", ticket=tid, seq=reply["seq"])
    await settle(again)
    assert bodies(again, tid) == [] and not again.pending("error")
    # Resuming from the public reply asks for nothing; the next public reply arrives
    # live at once, with no gap to fill for the notes' seqs.
    latest, welcome = await join(a, clients, token, resume={key: reply["seq"]})
    last = await bartek.request({"type": "send", "ticket": tid, "body": "Czy teraz działa?"}, "ack")
    for tab in (again, latest, tab_a, tab_b):
        got = await tab.expect("message", ticket=tid, seq=last["seq"])
        assert got["body"] == "Czy teraz działa?"
        await settle(tab)
        assert bodies(tab, tid) == []
    assert not [f for f in latest.frames + again.frames if NOTE in json.dumps(f, ensure_ascii=False)]

    # An agent resuming from before the note gets the notes and the replies, in order.
    returning, _ = await join(a, clients, tokens.agent(unique("celina"), name="Celina"), resume={key: before})
    replayed = [await returning.expect("message", ticket=tid) for _ in range(4)]
    assert [(m["seq"], m.get("internal", False)) for m in replayed] == [
        (note["seq"], True), (reply["seq"], False), (tail["seq"], True), (last["seq"], False)]


async def test_typing_and_ticket_frames_carry_no_note(nodes, clients, tokens: Tokens) -> None:
    a, b = nodes
    shop = unique("shop")
    customer, _ = await join(b, clients, tokens.customer(shop))
    ticket = await opened(customer)
    tid = ticket["id"]
    agent, _ = await join(a, clients, tokens.agent(unique("a")))
    await agent.request({"type": "follow", "ticket": tid}, "ticket")
    note = await agent.request({"type": "send", "ticket": tid, "body": NOTE, "internal": True}, "ack")
    listed = await customer.request({"type": "list_tickets"}, "tickets")
    mine = next(t for t in listed["tickets"] if t["id"] == tid)
    assert mine["last_seq"] == ticket["last_seq"] == note["seq"] - 1 and mine["unread"] == 0
    agents = await agent.request({"type": "list_tickets", "department": "*"}, "tickets")
    theirs = next(t for t in agents["tickets"] if t["id"] == tid)
    assert theirs["last_seq"] == note["seq"] and theirs["last_public_seq"] == note["seq"] - 1
    await settle(customer)
    assert not [f for f in customer.frames if NOTE in json.dumps(f, ensure_ascii=False)]


async def test_assignment_severity_and_department_notes_are_private(nodes, clients, tokens: Tokens) -> None:
    a, b = nodes
    shop = unique("shop")
    customer, _ = await join(a, clients, tokens.customer(shop))
    ticket = await opened(customer)
    tid = ticket["id"]
    anna = unique("a")
    agent, _ = await join(b, clients, tokens.agent(anna, name="Anna"))
    await agent.request({"type": "follow", "ticket": tid}, "ticket")
    # The assignee must be an agent Pomoc knows: Anna, since her hello.
    changed = await agent.request({"type": "update_ticket", "ticket": tid, "assignee": anna, "severity": "major",
                                   "department": "payments" if ticket["department"] != "payments" else "technical",
                                   "status": "waiting_on_customer"}, "ticket")
    assert changed["type"] == "ticket", changed
    notes = [await agent.expect("message", ticket=tid) for _ in range(4)]
    assert [(m["author"]["kind"], m.get("internal", False)) for m in notes] == [
        ("system", False), ("system", True), ("system", True), ("system", True)]
    assert "status" in notes[0]["body"] and f"przypisane do → {anna}" in notes[3]["body"]
    assert "priorytet" in notes[1]["body"] and "dział" in notes[2]["body"]
    status = await customer.expect("message", ticket=tid, seq=notes[0]["seq"])
    assert "czeka na klienta" in status["body"]
    await customer.expect("ticket", where=lambda f: f["ticket"]["id"] == tid
                          and f["ticket"]["status"] == "waiting_on_customer")
    await settle(customer)
    assert bodies(customer, tid) == []
    unread = [f["tickets"][str(tid)] for f in customer.pending("unread") if str(tid) in f["tickets"]]
    assert unread and max(unread) == 1, "the status note counts once; the private ones never"
    page = await customer.request({"type": "history", "ticket": tid}, "history")
    assert [m["seq"] for m in page["messages"]] == [*first(ticket), notes[0]["seq"]]
    _, welcome = await join(b, clients, tokens.customer(shop))
    assert next(t for t in welcome["tickets"] if t["id"] == tid)["last_seq"] == notes[0]["seq"]
    # The customer writes back: the reply comes right after the private notes' seqs.
    answer = await customer.request({"type": "send", "ticket": tid, "body": "Klucze zmienione"}, "ack")
    assert answer["seq"] == notes[3]["seq"] + 1
    await agent.expect("message", ticket=tid, seq=answer["seq"])


async def test_bad_notes_are_refused_and_nothing_is_stored(nodes, clients, tokens: Tokens) -> None:
    a, _ = nodes
    shop = unique("shop")
    customer, _ = await join(a, clients, tokens.customer(shop))
    ticket = await opened(customer)
    tid = ticket["id"]
    refused = await customer.request({"type": "send", "ticket": tid, "body": "Notatka?", "internal": True}, "ack")
    assert refused["type"] == "error" and refused["code"] == "forbidden", refused
    agent, _ = await join(a, clients, tokens.agent(unique("a")))
    for value in ("yes", 1, None, [True]):
        bad = await agent.request({"type": "send", "ticket": tid, "body": "x", "internal": value}, "ack")
        assert bad["type"] == "error" and bad["code"] == "bad_request" and "internal" in bad["message"], bad
    bad = await customer.request({"type": "send", "ticket": tid, "body": "x", "internal": "yes"}, "ack")
    assert bad["code"] == "bad_request"
    page = await agent.request({"type": "history", "ticket": tid}, "history")
    assert [m["seq"] for m in page["messages"]] == first(ticket), "nothing was stored"
    assert customer.closed is None and agent.closed is None
    # A note into a closed ticket is refused like any send.
    await agent.request({"type": "update_ticket", "ticket": tid, "status": "closed"}, "ticket")
    closed = await agent.request({"type": "send", "ticket": tid, "body": NOTE, "internal": True}, "ack")
    assert closed["code"] == "closed_ticket"


async def test_the_shops_export_has_no_note(nodes, clients, tokens: Tokens) -> None:
    a, _ = nodes
    shop = unique("shop")
    customer, _ = await join(a, clients, tokens.customer(shop))
    ticket = await opened(customer)
    me = unique("a")
    agent, _ = await join(a, clients, tokens.agent(me))
    note = await agent.request({"type": "send", "ticket": ticket["id"], "body": NOTE, "internal": True}, "ack")
    await agent.request({"type": "update_ticket", "ticket": ticket["id"], "assignee": me}, "ticket")
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "server", "export-shop", shop],
                                   cwd=ROOT, capture_output=True, text=True,
                                   env={**os.environ, **a.env, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert NOTE not in done.stdout and "przypisane" not in done.stdout and "internal" not in done.stdout
    (exported,) = json.loads(done.stdout)["tickets"]
    assert [m["seq"] for m in exported["messages"]] == first(ticket)
    assert exported["last_seq"] == note["seq"] - 1 and "last_public_seq" not in exported


async def test_a_retried_note_is_stored_once_and_read_back_as_a_note(nodes, clients, tokens: Tokens) -> None:
    a, b = nodes
    shop = unique("shop")
    customer, _ = await join(a, clients, tokens.customer(shop))
    ticket = await opened(customer)
    agent, _ = await join(a, clients, tokens.agent(unique("a")))
    sent = await agent.request({"type": "send", "ticket": ticket["id"], "body": NOTE, "internal": True,
                                "client_id": "same"}, "ack")
    again = await agent.request({"type": "send", "ticket": ticket["id"], "body": NOTE, "internal": True,
                                 "client_id": "same"}, "ack")
    assert again["seq"] == sent["seq"] and again["internal"] is True
    fresh, _ = await join(b, clients, tokens.agent(unique("b")))
    page: Frame = await fresh.request({"type": "history", "ticket": ticket["id"]}, "history")
    assert [(m["seq"], m.get("internal")) for m in page["messages"]] == [
        *((seq, None) for seq in first(ticket)), (sent["seq"], True)]


# Several `jobs --once` processes one after another: longer than the default on a loaded machine.
@pytest.mark.timeout(300)
async def test_a_note_is_never_mailed_nor_an_unread_reply(mail_clock, clients, inbox) -> None:
    node, tokens = mail_clock("2026-11-18T10:00:00+01:00")
    shop = unique("shop")
    customer, _ = await join(node, clients, tokens.customer(shop, email="owner@shop.example"))
    ticket, _ = await open_mailed(customer, title="Płatności")
    await gone(node, customer, f"c:{shop}:owner")
    me = unique("a")
    agent, _ = await join(node, clients, tokens.agent(me, name="Anna"))
    note = await agent.request({"type": "send", "ticket": ticket["id"], "body": NOTE, "internal": True}, "ack")
    await agent.request({"type": "update_ticket", "ticket": ticket["id"], "assignee": me}, "ticket")
    at = datetime.fromisoformat(note["created_at"])
    quiet = await run_jobs(node, at + DELAY + timedelta(seconds=5))
    assert quiet["mail.replies"] == 0, "a note is not a reply"
    answered = await reply(agent, ticket["id"], "Proszę zapisać klucz API jeszcze raz.")
    done = await run_jobs(node, answered + DELAY + timedelta(seconds=1))
    assert done["mail.replies"] == 1
    mails = inbox.wait_for(2)  # the acknowledgment and the one reply
    (mailed,) = [m for m in mails if "odpowied" in (m["Subject"] or "")]
    assert mailed["Subject"] == f"[Pomoc #{ticket['id']}] 1 nowa odpowiedź: Płatności"
    assert "Proszę zapisać klucz API" in mailed.text()
    assert not [m for m in mails if NOTE in m.text() or "przypisane" in m.text()]


async def test_unread_rebuilt_from_the_database_leaves_notes_out(nodes, clients, tokens: Tokens) -> None:
    a, b = nodes
    if a is b:
        pytest.skip("needs Redis shared by two processes (the embedded stand-in lives in one process)")
    shop = unique("shop")
    token = tokens.customer(shop)
    customer, _ = await join(a, clients, token)
    ticket = await opened(customer)
    key = str(ticket["id"])
    anna_id = unique("anna")
    anna, _ = await join(b, clients, tokens.agent(anna_id), feed=False)
    bartek, _ = await join(b, clients, tokens.agent(unique("bartek")), feed=False)
    await bartek.request({"type": "read", "ticket": ticket["id"], "seq": ticket["last_seq"]}, "unread")
    await anna.request({"type": "send", "ticket": ticket["id"], "body": NOTE, "internal": True}, "ack")
    await anna.request({"type": "update_ticket", "ticket": ticket["id"], "assignee": anna_id}, "ticket")
    await anna.request({"type": "send", "ticket": ticket["id"], "body": "Odpowiedź"}, "ack")
    await customer.expect("unread", where=lambda f: f["tickets"].get(key) == 1)
    # Everything under this deployment's prefix goes, as after FLUSHALL.
    client = aioredis.Redis.from_url(a.env["REDIS_URL"])
    try:
        keys = [k async for k in client.scan_iter(match=a.env["POMOC_REDIS_PREFIX"] + "*")]
        assert keys
        await client.delete(*keys)
    finally:
        await client.aclose()
    _, welcome = await join(b, clients, token)
    assert welcome["unread"] == {key: 1}, "the reply only: neither note counts for the shop"
    # A colleague's counts, read from the database: Anna's note and reply (Pomoc's own
    # private note about the assignment is news to nobody).
    listed = await bartek.request({"type": "list_tickets", "department": "*", "limit": 200}, "tickets")
    assert next(t for t in listed["tickets"] if t["id"] == ticket["id"])["unread"] == 2
    listed = await customer.request({"type": "list_tickets"}, "tickets")
    assert next(t for t in listed["tickets"] if t["id"] == ticket["id"])["unread"] == 1
