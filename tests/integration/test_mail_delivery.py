"""Mail delivery in process against a real SMTP server on loopback and a real database.

The stores queue with the ticket's own transaction, `MailDelivery` claims, renders
and sends through aiosmtplib to an aiosmtpd server (plain, STARTTLS with a login,
TLS from the start), and what arrived is parsed with the email package. Every test
runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from server.clock import FixedClock
from server.principal import Principal, Role
from server.rules.notices import Notice
from server.rules.policy import SupportPolicy
from server.rules.records import SYSTEM, Author, NewTicket
from server.settings import Settings
from server.store.db import create_engine
from server.store.messages import MessageStore
from server.store.models import notifications
from server.store.notifications import NotificationStore
from server.store.tickets import TicketStore
from server.worker.compose import MailSettings
from server.worker.mail import MailDelivery
from server.worker.smtp import MailboxTransport, SmtpTransport, Transport
from tests.conftest import drop_store, fresh_store
from tests.smtp import Inbox, self_signed, server_context

NOW = datetime(2026, 11, 18, 9, 0, tzinfo=UTC)
POLICY = SupportPolicy.from_config()
MAIL = MailSettings("Pomoc <no-reply@pomoc.test>", "no-reply@pomoc.test", "pomoc.test",
                    "https://panel.example/pomoc?ticket={ticket}", "https://pomoc.test", "s" * 32)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    settings = fresh_store(request.param, tmp_path_factory.mktemp("mail"), "mail")
    yield settings
    drop_store(settings)


@dataclass
class World:
    engine: AsyncEngine
    tickets: TicketStore
    messages: MessageStore
    store: NotificationStore

    def delivery(self, transport: Transport) -> MailDelivery:
        return MailDelivery(store=self.store, transport=transport, settings=MAIL, calendar=POLICY.calendar,
                            tickets=self.tickets, messages=self.messages, wall=FixedClock(NOW))

    async def open(self, email: str | None = "owner@shop.example", lang: str = "pl",
                   severity: str = "minor") -> tuple[int, Principal]:
        shop = f"shop-{uuid.uuid4().hex[:8]}"
        owner = Principal(Role.customer, "owner", "Właściciel", shop=shop, shop_name="Sklep", plan="standard",
                          email=email, lang=lang)
        intake = POLICY.intake(severity, NOW, 1, lang)
        new = NewTicket(title="Faktury", body="Nie generują się", severity=severity, context={},
                        client_id=uuid.uuid4().hex, sla_due_at=intake.sla_due_at, lang=lang)
        first = [(Author.of(owner), new.body), (SYSTEM, intake.acknowledgment)]
        from server.rules.notices import acknowledgment_notice

        ack = acknowledgment_notice(owner, new, first, POLICY.calendar)
        opened = await self.tickets.open(owner, new, first, NOW, notices=[ack] if ack else [])
        return opened.ticket.id, owner


@pytest.fixture
async def world(database: Settings) -> AsyncIterator[World]:
    engine = create_engine(database)
    yield World(engine, TicketStore(engine), MessageStore(engine), NotificationStore(engine))
    # Other tests of the module must not see this one's mails.
    async with engine.begin() as conn:
        await conn.execute(update(notifications).where(notifications.c.finished_at.is_(None))
                           .values(finished_at=NOW, outcome="test"))
    await engine.dispose()


async def outcome(world: World, ticket_id: int) -> list[tuple[str, str | None, int]]:
    async with world.engine.connect() as conn:
        rows = await conn.execute(select(notifications.c.kind, notifications.c.outcome, notifications.c.attempts)
                                  .where(notifications.c.ticket_id == ticket_id).order_by(notifications.c.id))
        return [(r[0], r[1], r[2]) for r in rows]


async def test_the_acknowledgment_is_stored_with_the_ticket_and_sent_once(world: World, inbox: Inbox) -> None:
    ticket_id, _ = await world.open()
    assert await outcome(world, ticket_id) == [("ack", None, 0)]
    done = await world.delivery(SmtpTransport(inbox.url, MAIL.envelope_from)).deliver_due(NOW)
    assert done.sent == 1
    mail = inbox.wait_for(1)[0]
    assert mail.recipients == ["owner@shop.example"] and mail.sender == "no-reply@pomoc.test"
    assert mail["Subject"] == f"[Pomoc #{ticket_id}] Przyjęliśmy zgłoszenie: Faktury"
    assert "Oczekiwany czas reakcji: do " in mail.text() and "Waga: drobne" in mail.text()
    assert await outcome(world, ticket_id) == [("ack", "sent", 1)]
    again = await world.delivery(SmtpTransport(inbox.url, MAIL.envelope_from)).deliver_due(NOW + timedelta(hours=1))
    assert again.sent == 0 and len(inbox.mails) == 1


@pytest.mark.parametrize("email", [None, "", "not-an-address", "a@b.example, c@d.example", "x@y\r\nBcc: z@w"])
async def test_no_address_no_mail(world: World, email: str | None) -> None:
    ticket_id, _ = await world.open(email=email)
    assert await outcome(world, ticket_id) == []


async def test_starttls_with_a_login(world: World, inbox: Inbox, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    secure = Inbox(starttls=server_context(cert, key), login=("pomoc", "p@ss word")).start()
    try:
        ticket_id, _ = await world.open()
        trust = ssl.create_default_context(cafile=str(cert))
        url = f"smtp://pomoc:p%40ss%20word@127.0.0.1:{secure.port}"
        done = await world.delivery(SmtpTransport(url, MAIL.envelope_from, tls_context=trust)).deliver_due(NOW)
        assert done.sent == 1
        assert secure.wait_for(1)[0]["Subject"].startswith(f"[Pomoc #{ticket_id}]")
        assert secure.tls_sessions >= 1, "STARTTLS was offered, so the session must be encrypted"
    finally:
        secure.stop()


async def test_smtps_speaks_tls_from_the_first_byte(world: World, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    secure = Inbox(implicit_tls=server_context(cert, key)).start()
    try:
        await world.open()
        trust = ssl.create_default_context(cafile=str(cert))
        url = f"smtps://127.0.0.1:{secure.port}"
        done = await world.delivery(SmtpTransport(url, MAIL.envelope_from, tls_context=trust)).deliver_due(NOW)
        assert done.sent == 1 and len(secure.wait_for(1)) == 1
    finally:
        secure.stop()


async def test_a_refused_recipient_is_not_tried_again(world: World, inbox: Inbox) -> None:
    inbox.refuse.add("gone@shop.example")
    ticket_id, _ = await world.open(email="gone@shop.example")
    transport = SmtpTransport(inbox.url, MAIL.envelope_from)
    done = await world.delivery(transport).deliver_due(NOW)
    assert (done.sent, done.failed) == (0, 1)
    assert await outcome(world, ticket_id) == [("ack", "rejected", 1)]
    assert (await world.delivery(transport).deliver_due(NOW + timedelta(hours=2))).failed == 0


async def test_smtp_down_backs_off_and_two_workers_send_each_mail_once_when_it_returns(
        world: World, database: Settings) -> None:
    inbox = Inbox()  # not started: nothing listens on its port
    ids = [(await world.open(email=f"u{i}@shop.example"))[0] for i in range(6)]
    transport = SmtpTransport(inbox.url, MAIL.envelope_from, timeout=5)
    first = await world.delivery(transport).deliver_due(NOW)
    assert (first.sent, first.failed) == (0, 6)
    # Backoff: not due again before 10 s.
    assert (await world.delivery(transport).deliver_due(NOW + timedelta(seconds=5))).failed == 0
    second = await world.delivery(transport).deliver_due(NOW + timedelta(seconds=10))
    assert second.failed == 6
    inbox.start()
    try:
        other = create_engine(database)  # a second worker: its own pool
        try:
            twin = World(other, TicketStore(other), MessageStore(other), NotificationStore(other))
            later = NOW + timedelta(minutes=5)
            a, b = await asyncio.gather(world.delivery(transport).deliver_due(later),
                                        twin.delivery(SmtpTransport(inbox.url, MAIL.envelope_from)).deliver_due(later))
        finally:
            await other.dispose()
        assert a.sent + b.sent == 6
        mails = inbox.wait_for(6)
        assert len(mails) == 6 and len({m["Message-ID"] for m in mails}) == 6
        for ticket_id in ids:
            assert await outcome(world, ticket_id) == [("ack", "sent", 3)]
    finally:
        inbox.stop()


async def test_an_opt_out_stops_mail_already_queued(world: World, inbox: Inbox) -> None:
    ticket_id, owner = await world.open()
    assert owner.shop is not None
    assert await world.store.opt_out(owner.shop, owner.id, ticket_id, NOW)
    done = await world.delivery(SmtpTransport(inbox.url, MAIL.envelope_from)).deliver_due(NOW)
    assert (done.sent, done.dropped) == (0, 1)
    assert await outcome(world, ticket_id) == [("ack", "suppressed", 1)]
    other, _ = await world.open()  # another ticket of another shop still gets its mail
    assert (await world.delivery(SmtpTransport(inbox.url, MAIL.envelope_from)).deliver_due(NOW)).sent == 1
    assert await outcome(world, other) == [("ack", "sent", 1)]


async def test_a_status_change_mails_the_opener_at_the_stored_address(world: World, inbox: Inbox) -> None:
    ticket_id, _ = await world.open(lang="en")
    await world.tickets.update(ticket_id, {"status": "resolved", "resolved_at": NOW}, ["Anna: status → resolved."],
                               NOW, notices=[Notice("resolved", {"agent": "Anna"})])
    done = await world.delivery(SmtpTransport(inbox.url, MAIL.envelope_from)).deliver_due(NOW)
    assert done.sent == 2
    subjects = sorted(m["Subject"] or "" for m in inbox.wait_for(2))
    assert subjects == [f"[Pomoc #{ticket_id}] Ticket resolved: Faktury",
                        f"[Pomoc #{ticket_id}] We have received your ticket: Faktury"]


async def test_the_local_mailbox_keeps_each_mail_once(world: World) -> None:
    await world.open(email="demo@shop.example")
    clock = FixedClock(NOW)
    done = await world.delivery(MailboxTransport(world.store, clock)).deliver_due(NOW)
    assert done.sent == 1
    kept = await world.store.mailbox("demo@shop.example")
    assert len(kept) == 1 and kept[0]["subject"].startswith("[Pomoc #")
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in kept[0]["message"]
