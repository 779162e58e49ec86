"""Mail end to end: real server processes at a chosen POMOC_CLOCK, `python -m server jobs
--once --at …` processes as the workers, and a real SMTP server on loopback whose
mails are parsed back with the email package. Every test runs on SQLite and on
PostgreSQL (the module's `db_kind`)."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta

import pytest

from tests.conftest import unique
from tests.mailing import PANEL, http, links, open_ticket, run_jobs, unsubscribe_url
from tests.smtp import Inbox
from tests.wsclient import join

WEDNESDAY_BEFORE_CHRISTMAS = "2026-12-23T16:30:00+01:00"
SATURDAY_NOON = "2026-11-21T12:00:00+01:00"


# Each test runs several `jobs --once` processes one after another: on a loaded machine
# that takes longer than the suite's default of 120 s.
pytestmark = pytest.mark.timeout(300)

async def test_the_acknowledgment_mail_states_the_chats_deadline_threads_and_unsubscribes(
        mail_clock, clients, inbox: Inbox) -> None:
    node, tokens = mail_clock(WEDNESDAY_BEFORE_CHRISTMAS)
    customer, _ = await join(node, clients, tokens.customer(unique("shop"), email="owner@shop.example"))
    ticket, ack = await open_ticket(customer)
    chat_due = re.search(r"Oczekiwany czas reakcji: (.+?)\.$", ack["body"])
    assert chat_due, ack["body"]
    assert chat_due.group(1) == "do czwartku 31.12, 16:30"  # across Christmas, as the chat says
    done = await run_jobs(node, "2026-12-23T16:31:00+01:00")
    assert done["mail.deliver"] == 1
    mail = inbox.wait_for(1)[0]
    number = ticket["id"]
    assert mail.recipients == ["owner@shop.example"]
    assert mail["From"] == "Pomoc <no-reply@pomoc.test>" and mail["To"] == "owner@shop.example"
    assert mail["Subject"] == f"[Pomoc #{number}] Przyjęliśmy zgłoszenie: Faktury"
    assert re.fullmatch(r"<pomoc\.[0-9a-f]{32}@pomoc\.test>", mail["Message-ID"] or "")
    root = f"<pomoc.ticket.{number}@pomoc.test>"
    assert mail["In-Reply-To"] == root and mail["References"] == root
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail.message.get_content_type() == "multipart/alternative"
    text, html = mail.text(), mail.html()
    for part in (text, html):
        assert f"#{number}" in part and "Faktury" in part and "drobne" in part
        assert "do czwartku 31.12, 16:30" in part  # the same deadline as the chat's
        assert "nie jest odczytywany" in part  # the sender's address is not read
    assert ack["body"] in text  # the chat's acknowledgment itself
    assert PANEL.replace("{ticket}", str(number)) in links(mail)
    assert f'href="{PANEL.replace("{ticket}", str(number))}"' in html
    assert "token" not in mail.raw.decode(errors="replace").lower()

    # The unsubscribe link: GET asks and changes nothing, POST (one-click) turns mail off.
    url = unsubscribe_url(mail)
    assert url.startswith(node.http + "/mail/unsubscribe/")
    status, page = await asyncio.to_thread(http, "GET", url)
    assert status == 200 and "<form" in page and "method=\"post\"" in page
    agent, _ = await join(node, clients, tokens.agent(unique("a")))
    await agent.request({"type": "update_ticket", "ticket": number, "status": "resolved"}, "ticket")
    done = await run_jobs(node, "2026-12-23T16:32:00+01:00")
    assert done["mail.deliver"] == 1  # the end of the work: mailed (the GET turned nothing off)
    resolved = inbox.wait_for(2)[1]
    assert resolved["Subject"] == f"[Pomoc #{number}] Zgłoszenie rozwiązane: Faktury"
    assert resolved["References"] == root and resolved["Message-ID"] != mail["Message-ID"]
    assert "Agnieszka" in resolved.text()
    status, page = await asyncio.to_thread(http, "POST", url, b"List-Unsubscribe=One-Click")
    assert status == 200 and "Wypisano" in page
    await agent.request({"type": "update_ticket", "ticket": number, "status": "closed"}, "ticket")
    done = await run_jobs(node, "2026-12-23T16:33:00+01:00")
    assert done["mail.deliver"] == 0 and len(inbox.mails) == 2, "unsubscribed: no more mail"
    forged = url[:-3] + ("aaa" if not url.endswith("aaa") else "bbb")
    assert (await asyncio.to_thread(http, "POST", forged, b"List-Unsubscribe=One-Click"))[0] == 400


async def test_a_queued_ticket_mail_names_the_opening_and_a_ticket_unsubscribe_keeps_the_others(
        mail_clock, clients, inbox: Inbox) -> None:
    node, tokens = mail_clock(SATURDAY_NOON)
    shop = unique("shop")
    customer, _ = await join(node, clients, tokens.customer(shop, email="owner@shop.example", lang="en"))
    first, ack = await open_ticket(customer, "question", "Coupons")
    assert "Monday 23.11 at 9:00" in ack["body"]
    await run_jobs(node, "2026-11-21T12:01:00+01:00")
    mail = inbox.wait_for(1)[0]
    assert mail["Subject"] == f"[Pomoc #{first['id']}] We have received your ticket: Coupons"
    assert "Monday 23.11 at 9:00" in mail.text() and "nobody reads" in mail.text()
    assert mail["Content-Language"] == "en"
    ticket_only = [u for u in links(mail) if "/mail/unsubscribe/" in u and u != unsubscribe_url(mail)]
    assert len(ticket_only) == 1
    status, page = await asyncio.to_thread(http, "POST", ticket_only[0], b"")
    assert status == 200 and f"#{first['id']}" in page
    second, _ = await open_ticket(customer, "question", "Shipping")
    agent, _ = await join(node, clients, tokens.agent(unique("a")))
    for ticket in (first, second):
        await agent.request({"type": "update_ticket", "ticket": ticket["id"], "status": "closed"}, "ticket")
    await run_jobs(node, "2026-11-21T12:05:00+01:00")
    subjects = [m["Subject"] for m in inbox.wait_for(3)]
    # The first ticket's closing is not mailed (turned off for that ticket); the second's is.
    assert subjects[1:] == [f"[Pomoc #{second['id']}] We have received your ticket: Shipping",
                            f"[Pomoc #{second['id']}] Ticket closed: Shipping"]


async def test_the_silent_customer_gets_both_reminders_and_the_resolution_by_mail(
        mail_clock, clients, inbox: Inbox) -> None:
    node, tokens = mail_clock("2026-03-02T10:00:00+01:00")
    customer, _ = await join(node, clients, tokens.customer(unique("shop"), email="quiet@shop.example"))
    ticket, _ = await open_ticket(customer)
    agent, _ = await join(node, clients, tokens.agent(unique("a")))
    waiting = await agent.request({"type": "update_ticket", "ticket": ticket["id"],
                                   "status": "waiting_on_customer"}, "ticket")
    since = datetime.fromisoformat(waiting["ticket"]["waiting_since"])
    await run_jobs(node, since + timedelta(minutes=1))
    assert len(inbox.wait_for(1)) == 1  # the acknowledgment; waiting on the customer is no mail
    for offset, count in ((timedelta(days=14), 2), (timedelta(days=17), 3), (timedelta(days=21), 4)):
        first, again = await asyncio.gather(run_jobs(node, since + offset), run_jobs(node, since + offset))
        assert first["mail.deliver"] + again["mail.deliver"] == 1, "one mail per step with two workers"
        assert len(inbox.wait_for(count)) == count
    subjects = [m["Subject"] or "" for m in inbox.mails]
    assert subjects[1] == subjects[2] == f"[Pomoc #{ticket['id']}] Czekamy na Twoją odpowiedź: Faktury"
    assert subjects[3] == f"[Pomoc #{ticket['id']}] Zgłoszenie oznaczone jako rozwiązane: Faktury"
    assert "po raz drugi" in inbox.mails[2].text()
    assert len({m["Message-ID"] for m in inbox.mails}) == 4
    assert {m["References"] for m in inbox.mails} == {f"<pomoc.ticket.{ticket['id']}@pomoc.test>"}


async def test_smtp_down_for_a_while_then_each_mail_arrives_once_with_two_workers(
        mail_clock, clients, inbox: Inbox) -> None:
    node, tokens = mail_clock("2026-11-18T10:00:00+01:00")
    inbox.stop()
    customer, _ = await join(node, clients, tokens.customer(unique("shop"), email="owner@shop.example"))
    numbers = [(await open_ticket(customer, title=f"Problem {i}"))[0]["id"] for i in range(3)]
    down = await asyncio.gather(run_jobs(node, "2026-11-18T10:01:00+01:00"),
                                run_jobs(node, "2026-11-18T10:01:00+01:00"))
    assert [d["mail.deliver"] for d in down] == [0, 0]
    again = await run_jobs(node, "2026-11-18T10:01:30+01:00")  # still down, after the first backoff
    assert again["mail.deliver"] == 0
    inbox.start()
    up = await asyncio.gather(run_jobs(node, "2026-11-18T11:00:00+01:00"),
                              run_jobs(node, "2026-11-18T11:00:00+01:00"))
    assert sum(d["mail.deliver"] for d in up) == 3
    mails = inbox.wait_for(3)
    assert len(mails) == 3 and len({m["Message-ID"] for m in mails}) == 3
    assert sorted(int(re.search(r"#(\d+)", m["Subject"] or "").group(1)) for m in mails) == sorted(numbers)
    later = await run_jobs(node, "2026-11-18T13:00:00+01:00")
    assert later["mail.deliver"] == 0 and len(inbox.mails) == 3
