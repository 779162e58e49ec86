"""The on-call team by mail and SMS (seed 003): every escalation fanned out once, the SMS
gateways' requests as a real HTTP receiver sees them, and end to end a critical ticket
on a Sunday night and an urgent one nobody answered, with real servers, `jobs --once`
workers, a real SMTP server and the webhook beside."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from server.principal import Principal, Role
from server.rules.policy import SupportPolicy
from server.rules.records import SYSTEM, Author, NewTicket
from server.rules.tickets import critical_event
from server.settings import Settings
from server.store.db import create_engine
from server.store.models import notifications, outbox
from server.store.notifications import NotificationStore
from server.store.oncall import fan_out
from server.store.tickets import TicketStore
from server.worker.sms import PomocGateway, SmsApiGateway, SmsDelivery
from tests.conftest import drop_store, fresh_store, unique
from tests.mailing import MailServers, open_ticket, run_jobs
from tests.receiver import Receiver
from tests.smtp import Inbox
from tests.wsclient import join

NOW = datetime(2026, 11, 22, 22, 0, tzinfo=UTC)  # Sunday 23:00 in Warsaw
POLICY = SupportPolicy.from_config()
PHONES = ("+48500600700", "+48600700800")
EMAILS = ("dyzur@pomoc.test", "kierownik@pomoc.test")


# ------------------------------------------------------------- in process
@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    settings = fresh_store(request.param, tmp_path_factory.mktemp("oncall"), "oncall")
    yield settings
    drop_store(settings)


# Each test runs several `jobs --once` processes one after another: on a loaded machine
# that takes longer than the suite's default of 120 s.
pytestmark = pytest.mark.timeout(300)

@pytest.fixture
async def engine(database: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database)
    yield engine
    async with engine.begin() as conn:  # the next test starts with nothing pending
        await conn.execute(delete(outbox))  # (and their notifications, by cascade)
    await engine.dispose()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver().start()
    yield hook
    hook.stop()


async def critical_ticket(engine: AsyncEngine) -> int:
    owner = Principal(Role.customer, "owner", "Ola", shop=f"shop-{uuid.uuid4().hex[:8]}", shop_name="Sklep Zielony",
                      plan="standard")
    due = POLICY.due("critical", NOW)
    new = NewTicket(title="Sklep nie przyjmuje zamówień", body="Koszyk zwraca błąd 500", severity="critical",
                    context={}, client_id=uuid.uuid4().hex, sla_due_at=due,
                    events=(critical_event(None, "Sklep nie przyjmuje zamówień", owner.shop, owner.shop_name, NOW,
                                           due, NOW),))
    opened = await TicketStore(engine).open(owner, new, [(Author.of(owner), new.body), (SYSTEM, "ack")],
                                            NOW)
    return opened.ticket.id


async def test_each_escalation_becomes_one_mail_per_address_and_one_sms_per_phone(engine: AsyncEngine) -> None:
    ticket_id = await critical_ticket(engine)
    since = NOW - timedelta(days=1)
    first, second = await asyncio.gather(fan_out(engine, NOW, since, EMAILS, PHONES),
                                         fan_out(engine, NOW, since, EMAILS, PHONES))
    assert first + second == 4, "two workers at once: every notification once"
    assert await fan_out(engine, NOW, since, EMAILS, PHONES) == 0
    async with engine.connect() as conn:
        rows = (await conn.execute(select(notifications.c.channel, notifications.c.recipient, notifications.c.kind)
                                   .where(notifications.c.ticket_id == ticket_id)
                                   .order_by(notifications.c.id))).all()
    assert sorted((r[0], r[1]) for r in rows) == sorted([("mail", e) for e in EMAILS] + [("sms", p) for p in PHONES])
    assert {r[2] for r in rows} == {"oncall"}
    # An escalation older than the look-back is not paged any more.
    later = await critical_ticket(engine)
    assert await fan_out(engine, NOW + timedelta(days=2), NOW + timedelta(days=1), EMAILS, PHONES) == 0
    assert later > ticket_id


async def test_the_pomoc_gateway_posts_signed_json(engine: AsyncEngine, receiver: Receiver) -> None:
    ticket_id = await critical_ticket(engine)
    await fan_out(engine, NOW, NOW - timedelta(days=1), (), PHONES[:1])
    async with httpx.AsyncClient(timeout=5) as client:
        delivery = SmsDelivery(NotificationStore(engine), PomocGateway(receiver.url, "sms-secret"),
                               POLICY.calendar, client)
        assert await delivery.deliver_due(NOW) == 1
        assert await delivery.deliver_due(NOW + timedelta(hours=1)) == 0
    call = receiver.wait_for(1)[0]
    assert call.json["to"] == "+48500600700" and set(call.json) == {"to", "text"}
    assert call.json["text"].startswith(f"Pomoc: KRYTYCZNE zgłoszenie #{ticket_id} Sklep Zielony:")
    assert "Reakcja do poniedziałku 23.11, 15:00." in call.json["text"]
    stamp = call.headers["X-Pomoc-Timestamp"]
    expected = hmac.new(b"sms-secret", stamp.encode() + b"." + call.body, hashlib.sha256).hexdigest()
    assert call.headers["X-Pomoc-Signature"] == f"sha256={expected}" and call.headers["X-Pomoc-Event"] == "sms"


async def test_the_smsapi_gateway_speaks_smsapi_and_retries_its_errors(engine: AsyncEngine, receiver: Receiver) -> None:
    await critical_ticket(engine)
    await fan_out(engine, NOW, NOW - timedelta(days=1), (), PHONES[:1])
    store = NotificationStore(engine)
    gateway = SmsApiGateway(receiver.url, "smsapi-token", "Pomoc")
    async with httpx.AsyncClient(timeout=5) as client:
        receiver.reply = json.dumps({"error": 103, "message": "Not enough points"}).encode()
        delivery = SmsDelivery(store, gateway, POLICY.calendar, client)
        assert await delivery.deliver_due(NOW) == 0
        receiver.reply = json.dumps({"count": 1, "list": [{"id": "1", "points": 0.16, "number": "48500600700",
                                                             "status": "QUEUE"}]}).encode()
        assert await delivery.deliver_due(NOW + timedelta(seconds=5)) == 0, "backoff: not again before 10 s"
        assert await delivery.deliver_due(NOW + timedelta(seconds=10)) == 1
    first, second = receiver.wait_for(2)
    for call in (first, second):
        assert call.headers["Authorization"] == "Bearer smsapi-token"
        form = {k: v[0] for k, v in parse_qs(call.body.decode()).items()}
        assert form["to"] == "48500600700" and form["from"] == "Pomoc" and form["format"] == "json"
        assert form["encoding"] == "utf-8" and form["check_idx"] == "1" and form["message"].startswith("Pomoc: ")
    assert parse_qs(first.body.decode())["idx"] == parse_qs(second.body.decode())["idx"], "the same idx each time"


# ------------------------------------------------------------ end to end
@pytest.fixture
def hooks() -> Iterator[tuple[Receiver, Receiver]]:
    sms, webhook = Receiver().start(), Receiver().start()
    yield sms, webhook
    sms.stop()
    webhook.stop()


@pytest.fixture
def oncall_clock(server_env: dict[str, str], tmp_path: Path, inbox: Inbox,
                 hooks: tuple[Receiver, Receiver]) -> Iterator[MailServers]:
    sms, webhook = hooks
    servers = MailServers({**server_env, "POMOC_ONCALL_EMAILS": ",".join(EMAILS),
                           "POMOC_ONCALL_PHONES": ",".join(PHONES), "POMOC_SMS_URL": sms.url,
                           "POMOC_WEBHOOK_URL": webhook.url, "POMOC_WEBHOOK_SECRET": "hook-secret"}, tmp_path, inbox)
    yield servers
    servers.stop()


async def test_a_critical_ticket_on_a_sunday_night_pages_oncall_by_mail_and_sms_at_once(
        oncall_clock, clients, inbox: Inbox, hooks: tuple[Receiver, Receiver]) -> None:
    sms, webhook = hooks
    node, tokens = oncall_clock("2026-11-22T23:00:00+01:00")
    customer, _ = await join(node, clients, tokens.customer(unique("shop"), shop_name="Sklep Zielony"))
    ticket, _ = await open_ticket(customer, "critical", "Sklep nie przyjmuje zamówień")
    at = "2026-11-22T23:00:05+01:00"
    both = await asyncio.gather(run_jobs(node, at), run_jobs(node, at))
    assert sum(d["oncall.page"] for d in both) == 4
    assert sum(d["mail.deliver"] for d in both) == 2 and sum(d["sms.deliver"] for d in both) == 2
    mails = inbox.wait_for(2)
    assert sorted(r for m in mails for r in m.recipients) == sorted(EMAILS)
    for mail in mails:
        assert mail["Subject"] == (f"[Pomoc dyżur] KRYTYCZNE zgłoszenie #{ticket['id']}: "
                                   "Sklep nie przyjmuje zamówień (Sklep Zielony)")
        assert "do poniedziałku 23.11, 15:" in mail.text() and f"{node.http}/agent" in mail.text()
        assert mail["List-Unsubscribe"] is None and mail["References"] == f"<pomoc.ticket.{ticket['id']}@pomoc.test>"
    calls = sms.wait_for(2)
    assert sorted(c.json["to"] for c in calls) == sorted(PHONES)
    assert all(f"#{ticket['id']}" in c.json["text"] for c in calls)
    assert [c.json["event"] for c in webhook.wait_for(1)] == ["ticket.critical"], "the webhook stays"
    again = await run_jobs(node, "2026-11-22T23:30:00+01:00")
    assert again["oncall.page"] == 0 and len(inbox.mails) == 2 and len(sms.requests) == 2


async def test_an_urgent_ticket_nobody_answers_pages_oncall_after_two_working_hours(
        oncall_clock, clients, inbox: Inbox, hooks: tuple[Receiver, Receiver]) -> None:
    sms, _ = hooks
    node, tokens = oncall_clock("2026-11-20T16:30:00+01:00")  # Friday, half an hour before closing
    customer, _ = await join(node, clients, tokens.customer(unique("shop")))
    ticket, _ = await open_ticket(customer, "major", "Płatności nie działają")
    number = f"#{ticket['id']}"

    def about(mails: list) -> list:
        return [m for m in mails if f"{number}:" in (m["Subject"] or "")]

    # (Other tests' tickets share the database: only this ticket's pages are looked at.)
    await run_jobs(node, "2026-11-23T10:29:00+01:00")  # Monday: 1 h 59 min of working time
    assert not about(inbox.mails) and not [c for c in sms.requests if f"{number} " in c.json["text"]]
    await run_jobs(node, "2026-11-23T10:31:00+01:00")
    mails = inbox.wait_for(2, where=lambda m: f"{number}:" in (m["Subject"] or ""))
    assert sorted(r for m in mails for r in m.recipients) == sorted(EMAILS)
    assert {m["Subject"] for m in mails} == {
        f"[Pomoc dyżur] Brak reakcji na zgłoszenie {number}: Płatności nie działają (Sklep {ticket['shop']})"}
    texts = [c.json["text"] for c in sms.wait_for(2) if f"{number} " in c.json["text"]]
    assert len(texts) == 2 and texts[0].startswith(f"Pomoc: Brak reakcji na zgłoszenie {number} ")
