"""Unread agent replies by mail, end to end: real servers at a chosen clock, real Redis
(presence), `jobs --once --at` workers, a real SMTP server. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta

import pytest
import redis.asyncio as aioredis

from server.realtime.keys import Keys
from tests.conftest import unique
from tests.mailing import open_ticket, run_jobs
from tests.servers import ServerProcess
from tests.smtp import Inbox
from tests.wsclient import Client, join

DELAY = timedelta(seconds=120)  # POMOC_MAIL_DELAY's default


# Each test runs several `jobs --once` processes one after another: on a loaded machine
# that takes longer than the suite's default of 120 s.
pytestmark = pytest.mark.timeout(300)

async def connections(node: ServerProcess, reader: str) -> int:
    client = aioredis.Redis.from_url(node.env["REDIS_URL"])
    try:
        return int(await client.hlen(Keys(node.env["POMOC_REDIS_PREFIX"]).connections(reader)))
    finally:
        await client.aclose()


async def gone(node: ServerProcess, client: Client, reader: str, timeout: float = 10.0) -> None:
    """Close the customer's panel and wait until the server has counted it out."""
    await client.close()
    deadline = time.monotonic() + timeout
    while await connections(node, reader):
        if time.monotonic() > deadline:
            raise AssertionError(f"{reader} still has a connection open")
        await asyncio.sleep(0.05)  # polling Redis for a condition another process changes, bounded


async def reply(agent: Client, ticket_id: int, body: str) -> datetime:
    ack = await agent.request({"type": "send", "ticket": ticket_id, "body": body}, "ack")
    assert ack["type"] == "ack", ack
    return datetime.fromisoformat(ack["created_at"])


async def test_two_unread_replies_make_one_mail_after_the_delay(mail_clock, clients, inbox: Inbox) -> None:
    node, tokens = mail_clock("2026-11-18T10:00:00+01:00")
    shop = unique("shop")
    customer, _ = await join(node, clients, tokens.customer(shop, email="owner@shop.example"))
    ticket, _ = await open_ticket(customer, title="Płatności")
    await gone(node, customer, f"c:{shop}:owner")
    agent, _ = await join(node, clients, tokens.agent(unique("a"), name="Anna"))
    first = await reply(agent, ticket["id"], "Sprawdzam konfigurację Przelewy24.")
    last = await reply(agent, ticket["id"], "Proszę zapisać klucz API jeszcze raz.")
    early = await run_jobs(node, last + DELAY - timedelta(seconds=1))
    assert early["mail.replies"] == 0 and early["mail.deliver"] == 1  # only the acknowledgment
    due = last + DELAY + timedelta(seconds=1)
    both = await asyncio.gather(run_jobs(node, due), run_jobs(node, due))
    assert sum(d["mail.replies"] for d in both) == 1, "one mail, whichever worker decides"
    mails = inbox.wait_for(2)
    assert len(mails) == 2
    mail = mails[1]
    assert mail["Subject"] == f"[Pomoc #{ticket['id']}] 2 nowe odpowiedzi: Płatności"
    text = mail.text()
    assert "Sprawdzam konfigurację Przelewy24." in text and "Proszę zapisać klucz API jeszcze raz." in text
    assert text.index("Sprawdzam") < text.index("Proszę"), "oldest first"
    assert "Anna, 18.11.2026, 10:" in text and first < last  # who and when, in Warsaw time
    assert mail["References"] == f"<pomoc.ticket.{ticket['id']}@pomoc.test>"
    later = await run_jobs(node, due + timedelta(hours=1))
    assert later["mail.replies"] == 0 and len(inbox.mails) == 2, "the same replies are never mailed twice"
    # A third reply later: a mail with that one only.
    third = await reply(agent, ticket["id"], "Czy już działa?")
    await run_jobs(node, third + DELAY + timedelta(seconds=1))
    mails = inbox.wait_for(3)
    assert mails[2]["Subject"] == f"[Pomoc #{ticket['id']}] 1 nowa odpowiedź: Płatności"
    assert "Czy już działa?" in mails[2].text() and "Sprawdzam" not in mails[2].text()


async def test_a_reply_read_in_the_panel_sends_nothing_and_none_goes_while_connected(
        mail_clock, clients, inbox: Inbox) -> None:
    node, tokens = mail_clock("2026-11-18T10:00:00+01:00")
    shop = unique("shop")
    token = tokens.customer(shop, email="owner@shop.example", lang="en")
    customer, _ = await join(node, clients, token)
    read_one, _ = await open_ticket(customer, title="Invoices")
    unread_one, _ = await open_ticket(customer, title="Shipping")
    agent, _ = await join(node, clients, tokens.agent(unique("a")))
    at = await reply(agent, read_one["id"], "Fixed, please check.")
    seen = await customer.expect("message", ticket=read_one["id"], where=lambda m: m["author"]["kind"] == "agent")
    await customer.request({"type": "read", "ticket": read_one["id"], "seq": seen["seq"]}, "unread")
    later = await reply(agent, unread_one["id"], "Which carrier do you use?")
    # Still connected, not read: no mail while the panel is open.
    connected = await run_jobs(node, later + DELAY + timedelta(seconds=1))
    assert connected["mail.replies"] == 0
    await gone(node, customer, f"c:{shop}:owner")
    after = await run_jobs(node, later + DELAY + timedelta(seconds=2))
    assert after["mail.replies"] == 1
    mails = inbox.wait_for(3)  # two acknowledgments and the one unread reply
    replies = [m for m in mails if "new repl" in (m["Subject"] or "")]
    assert [m["Subject"] for m in replies] == [f"[Pomoc #{unread_one['id']}] 1 new reply: Shipping"]
    assert "Which carrier do you use?" in replies[0].text()
    assert not [m for m in mails if "Fixed, please check." in m.text()], "read in the panel: never mailed"
    assert at < later
