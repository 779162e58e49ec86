"""The pure side of mail: addresses, which events mail whom, the words, the signed links,
the message headers and the settings. No network, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

import pytest

from server.principal import Principal, Role
from server.rules.mailtext import Links, MailView, ReplyLine, render, replies_subject, sms_text
from server.rules.notices import (
    Reply,
    acknowledgment_notice,
    mail_address,
    oncall_channels,
    oncall_plan,
    replies_mail,
    status_notice,
    urgency,
)
from server.rules.optout import OptOut, sign, verify
from server.rules.policy import SupportPolicy
from server.rules.records import SYSTEM, Author, NewTicket, Ticket
from server.settings import Settings, SettingsError
from server.worker.compose import MailSettings, compose, message_id, ticket_root

POLICY = SupportPolicy.from_config()
CAL = POLICY.calendar
WED = datetime(2026, 11, 18, 9, 0, tzinfo=UTC)  # Wednesday 10:00 in Warsaw


def owner(email: str | None = "owner@shop.example", lang: str = "pl") -> Principal:
    return Principal(Role.customer, "u1", "Ola", shop="s1", shop_name="Sklep", plan="standard", email=email,
                     lang=lang)


AGENT = Principal(Role.agent, "a1", "Anna")


@pytest.mark.parametrize(("text", "expected"), [
    ("owner@shop.example", "owner@shop.example"),
    ("o.w+tag@sub.shop.pl", "o.w+tag@sub.shop.pl"),
    ("owner@localhost", "owner@localhost"),
    (None, None), ("", None), ("owner", None), ("@shop.example", None), ("owner@", None),
    ("a@b@c.example", None), ("Ola <owner@shop.example>", None), ("a@b.example, c@d.example", None),
    ("a@b.example\r\nBcc: evil@x.example", None), ("a b@shop.example", None), (".a@shop.example", None),
    ("a..b@shop.example", None), ("a@-shop.example", None), ("a@shop..example", None),
    ("x" * 65 + "@shop.example", None), ("a@" + "b" * 250 + ".pl", None),
])
def test_mail_address(text: str | None, expected: str | None) -> None:
    assert mail_address(text) == expected


def _first(body: str, ack: str) -> list[tuple[Author, str]]:
    return [(Author.of(owner()), body), (SYSTEM, ack)]


@pytest.mark.parametrize(("severity", "at", "lang", "due", "queued"), [
    # A minor ticket the day before Christmas Eve: 4 working days, over the holidays.
    ("minor", datetime(2026, 12, 23, 15, 30, tzinfo=UTC), "pl", "do czwartku 31.12, 16:30", None),
    # A question on Saturday noon: queued until Monday 9:00.
    ("question", datetime(2026, 11, 21, 11, 0, tzinfo=UTC), "en", "by Wednesday 02.12, 9:00",
     "Monday 23.11 at 9:00"),
    # Critical on a Sunday night: 16 clock hours, no queue.
    ("critical", datetime(2026, 11, 22, 22, 0, tzinfo=UTC), "pl", "do poniedziałku 23.11, 15:00", None),
])
def test_the_acknowledgment_mail_carries_the_chats_words_and_deadline(severity: str, at: datetime, lang: str,
                                                                       due: str, queued: str | None) -> None:
    intake = POLICY.intake(severity, at, 0, lang)
    new = NewTicket(title="Faktury", body="Opis", severity=severity, context={}, client_id="c1",
                    sla_due_at=intake.sla_due_at, queued_until=intake.queued_until, lang=lang)
    notice = acknowledgment_notice(owner(lang=lang), new, _first("Opis", intake.acknowledgment), CAL)
    assert notice is not None and notice.kind == "ack" and notice.to == "owner@shop.example"
    assert notice.data["acknowledgment"] == intake.acknowledgment
    assert notice.data["due"] == due and due in intake.acknowledgment
    assert notice.data["queued"] == queued
    if queued:
        assert queued in intake.acknowledgment


def test_no_acknowledgment_mail_without_an_address() -> None:
    new = NewTicket(title="T", body="B", severity="minor", context={}, client_id="c")
    assert acknowledgment_notice(owner(email=None), new, _first("B", "ack"), CAL) is None
    assert acknowledgment_notice(owner(email="nope"), new, _first("B", "ack"), CAL) is None


def _ticket(status: str) -> Ticket:
    return Ticket(id=7, shop_id="s1", created_by="u1", title="T", status=status, severity="minor", department=None,
                  assignee=None, context={}, last_seq=2, created_at=WED, updated_at=WED, sla_due_at=None,
                  queued_until=None, closed_at=None)


@pytest.mark.parametrize(("who", "before", "after", "kind"), [
    (AGENT, "open", "resolved", "resolved"),
    (AGENT, "waiting_on_customer", "closed", "closed"),
    (AGENT, "resolved", "closed", "closed"),
    (AGENT, "open", "waiting_on_customer", None),
    (AGENT, "resolved", "open", None),
    (owner(), "open", "resolved", None),  # the customer knows: it did it itself
])
def test_the_end_of_the_work_is_mailed_when_an_agent_resolves_or_closes(who: Principal, before: str, after: str,
                                                                         kind: str | None) -> None:
    notice = status_notice(who, _ticket(before), {"status": after})
    assert (notice.kind if notice else None) == kind
    if notice:
        assert notice.data["agent"] == who.name and notice.to is None  # the opener's stored address


def test_no_status_mail_for_other_changes() -> None:
    assert status_notice(AGENT, _ticket("open"), {"severity": "major"}) is None


# ------------------------------------------------------------------- words
LINKS = Links(panel="https://panel.example/pomoc?ticket=7", unsubscribe_ticket="https://p.test/mail/unsubscribe/t",
              unsubscribe_all="https://p.test/mail/unsubscribe/a")


@pytest.mark.parametrize("kind", ["ack", "resolved", "closed", "reminder", "silent_resolved", "replies"])
@pytest.mark.parametrize("lang", ["pl", "en"])
def test_every_customer_mail_says_its_sender_is_not_read_and_links_the_panel(kind: str, lang: str) -> None:
    replies = (ReplyLine("Anna", WED, "Proszę sprawdzić ustawienia"),) if kind == "replies" else ()
    view = MailView(kind, lang, 7, "Faktury", {"agent": "Anna", "body": "Czekamy", "severity": "minor",
                                               "due": "do środy", "acknowledgment": "Dziękujemy"}, LINKS, replies)
    mail = render(view, CAL)
    assert "#7" in mail.subject and "Faktury" in mail.subject and "\n" not in mail.subject
    not_read = "nie jest odczytywany" if lang == "pl" else "nobody reads"
    for part in (mail.text, mail.html):
        assert not_read in part
        assert "https://panel.example/pomoc?ticket=7" in part
        assert "https://p.test/mail/unsubscribe/t" in part and "https://p.test/mail/unsubscribe/a" in part


def test_people_s_words_are_escaped_in_the_html() -> None:
    view = MailView("replies", "pl", 7, "<script>x</script>", {}, LINKS,
                    (ReplyLine("<b>Anna</b>", WED, 'Kliknij <a href="evil">tu</a>\ndruga linia'),))
    mail = render(view, CAL)
    assert "<script>" not in mail.html and "&lt;script&gt;" in mail.html
    assert '<a href="evil">' not in mail.html and "&lt;b&gt;Anna&lt;/b&gt;" in mail.html
    assert "> Kliknij <a href=\"evil\">tu</a>\n> druga linia" in mail.text  # plain text stays as written
    assert "18.11.2026, 10:00" in mail.text  # the reply's time in Warsaw


@pytest.mark.parametrize(("count", "pl", "en"), [
    (1, "1 nowa odpowiedź", "1 new reply"), (2, "2 nowe odpowiedzi", "2 new replies"),
    (4, "4 nowe odpowiedzi", "4 new replies"), (5, "5 nowych odpowiedzi", "5 new replies"),
    (12, "12 nowych odpowiedzi", "12 new replies"), (22, "22 nowe odpowiedzi", "22 new replies"),
])
def test_polish_plurals_in_the_replies_subject(count: int, pl: str, en: str) -> None:
    assert replies_subject(7, "T", count, "pl") == f"[Pomoc #7] {pl}: T"
    assert replies_subject(7, "T", count, "en") == f"[Pomoc #7] {en}: T"


def test_the_oncall_mail_and_sms() -> None:
    data = {"event": "ticket.critical", "title": "Sklep nie przyjmuje zamówień", "severity": "critical",
            "shop": "s1", "shop_name": "Sklep Zielony", "created_at": "2026-11-22T22:00:00+00:00",
            "sla_due_at": "2026-11-23T14:00:00+00:00"}
    mail = render(MailView("oncall", "pl", 9, data["title"], data, Links(console="https://p.test/agent")), CAL)
    assert mail.subject == "[Pomoc dyżur] KRYTYCZNE zgłoszenie #9: Sklep nie przyjmuje zamówień (Sklep Zielony)"
    assert "do poniedziałku 23.11, 15:00" in mail.text and "22.11.2026, 23:00" in mail.text
    assert "https://p.test/agent" in mail.text and "unsubscribe" not in mail.text
    sms = sms_text(data, 9, CAL)
    assert sms == ("Pomoc: KRYTYCZNE zgłoszenie #9 Sklep Zielony: Sklep nie przyjmuje zamówień. "
                   "Reakcja do poniedziałku 23.11, 15:00.")
    assert len(sms_text({**data, "title": "x" * 500, "shop_name": "y" * 500}, 9, CAL)) <= 160


# ------------------------------------------------------------ signed links
def test_unsubscribe_tokens_say_exactly_what_was_signed() -> None:
    secret = "k" * 32
    for optout in (OptOut("s1", "u1", 7, "pl"), OptOut("sklep ż", "użytkownik/1", 0, "en")):
        token = sign(secret, optout)
        assert verify(secret, token) == optout
        assert all(c.isalnum() or c in "-_." for c in token)
    token = sign(secret, OptOut("s1", "u1", 7))
    payload, mac = token.split(".")
    assert verify("another-secret-of-32-characters!", token) is None
    other = sign(secret, OptOut("s1", "u2", 7)).split(".")[0]
    assert verify(secret, f"{other}.{mac}") is None, "a signature does not move to another user"
    for bad in ("", ".", token + "x", token.replace(".", ""), f"{payload}.{mac}.x", "a" * 3000, f"{payload}.!!"):
        assert verify(secret, bad) is None


# ----------------------------------------------------------------- message
def test_the_message_threads_per_ticket_and_carries_one_click_unsubscribe() -> None:
    settings = MailSettings.from_settings(Settings(mail_from="Pomoc <no-reply@pomoc.example>",
                                                   panel_url="https://panel.example/pomoc?ticket={ticket}",
                                                   public_url="https://pomoc.example", secret="z" * 32))
    links = settings.customer_links(7, "s" * 200, "u" * 200, "pl")
    assert links.panel == "https://panel.example/pomoc?ticket=7"
    rendered = render(MailView("resolved", "pl", 7, "Zażółć gęślą jaźń", {"agent": "Anna"}, links), CAL)
    message = compose(rendered, key="resolved:7:5", recipient="owner@shop.example", lang="pl", ticket_id=7,
                      settings=settings, links=links, sent_at=WED)
    raw = message.as_bytes()
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["Message-ID"] == message_id("resolved:7:5", "pomoc.example")
    assert message_id("resolved:7:5", "pomoc.example") != message_id("resolved:7:6", "pomoc.example")
    assert parsed["In-Reply-To"] == parsed["References"] == ticket_root(7, "pomoc.example")
    assert parsed["Subject"] == "[Pomoc #7] Zgłoszenie rozwiązane: Zażółć gęślą jaźń"
    header = raw.split(b"List-Unsubscribe: ", 1)[1].split(b"\r\n", 1)[0].decode()
    assert header == f"<{links.unsubscribe_all}>", "one piece, never encoded-words"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert b"Content-Transfer-Encoding: 8bit" not in raw


# ---------------------------------------------------------------- settings
def test_mail_settings_from_the_environment() -> None:
    s = Settings.from_env({"POMOC_SMTP_URL": "smtps://u:p@mail.example:465", "POMOC_MAIL_FROM": "no-reply@x.pl",
                           "POMOC_PANEL_URL": "https://panel.example/p?t={ticket}",
                           "POMOC_PUBLIC_URL": "https://pomoc.example/"})
    assert (s.smtp_url, s.mail_from, s.panel_url, s.public_base) == (
        "smtps://u:p@mail.example:465", "no-reply@x.pl", "https://panel.example/p?t={ticket}", "https://pomoc.example")
    embedded = Settings.from_env({})
    assert embedded.smtp_url is None and embedded.public_base == "http://127.0.0.1:8000"


@pytest.mark.parametrize(("env", "name"), [
    ({"POMOC_SMTP_URL": "http://mail.example"}, "POMOC_SMTP_URL"),
    ({"POMOC_SMTP_URL": "smtp://"}, "POMOC_SMTP_URL"),
    ({"POMOC_MAIL_FROM": "nobody"}, "POMOC_MAIL_FROM"),
    ({"POMOC_PANEL_URL": "https://panel.example/pomoc"}, "POMOC_PANEL_URL"),
    ({"POMOC_PUBLIC_URL": "pomoc.example"}, "POMOC_PUBLIC_URL"),
    ({"POMOC_PUBLIC_URL": "https://pomoc.przykład.pl"}, "POMOC_PUBLIC_URL"),
])
def test_bad_mail_settings_name_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env(env)


def test_a_delay_is_positive() -> None:
    assert timedelta(minutes=2) == Settings().mail_delay


# ------------------------------------------------------------ unread replies
def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


D = timedelta(minutes=2)


@pytest.mark.parametrize(("replies", "read", "mailed", "online", "now", "send", "due"), [
    # Nothing written, or everything read or mailed already: nothing to do.
    ([], 0, 0, False, "2026-11-18T10:00:00+00:00", (), None),
    ([(3, "2026-11-18T10:00:00+00:00")], 3, 0, False, "2026-11-18T11:00:00+00:00", (), None),
    ([(3, "2026-11-18T10:00:00+00:00")], 0, 3, False, "2026-11-18T11:00:00+00:00", (), None),
    # One reply: due exactly `delay` after it, not a second before.
    ([(3, "2026-11-18T10:00:00+00:00")], 2, 0, False, "2026-11-18T10:01:59+00:00", (),
     "2026-11-18T10:02:00+00:00"),
    ([(3, "2026-11-18T10:00:00+00:00")], 2, 0, False, "2026-11-18T10:02:00+00:00", (3,), None),
    # Two replies: one mail with both, once the newest is `delay` old.
    ([(3, "2026-11-18T10:00:00+00:00"), (4, "2026-11-18T10:01:00+00:00")], 2, 0, False,
     "2026-11-18T10:02:30+00:00", (), "2026-11-18T10:03:00+00:00"),
    ([(4, "2026-11-18T10:01:00+00:00"), (3, "2026-11-18T10:00:00+00:00")], 2, 0, False,
     "2026-11-18T10:03:00+00:00", (3, 4), None),
    # A burst that goes on: nobody waits longer than twice the delay after the oldest.
    ([(3, "2026-11-18T10:00:00+00:00"), (4, "2026-11-18T10:01:50+00:00"), (5, "2026-11-18T10:03:40+00:00")], 2, 0,
     False, "2026-11-18T10:04:00+00:00", (3, 4, 5), None),
    # Read up to 4 in the panel: only 5 is news.
    ([(3, "2026-11-18T10:00:00+00:00"), (4, "2026-11-18T10:01:00+00:00"), (5, "2026-11-18T10:02:00+00:00")], 4, 0,
     False, "2026-11-18T10:05:00+00:00", (5,), None),
    # Mailed up to 4 before: the next mail holds 5 only.
    ([(3, "2026-11-18T10:00:00+00:00"), (5, "2026-11-18T10:02:00+00:00")], 0, 4, False,
     "2026-11-18T10:05:00+00:00", (5,), None),
    # Connected: the panel shows them; no mail (and no instant to wait for).
    ([(3, "2026-11-18T10:00:00+00:00")], 2, 0, True, "2026-11-18T10:30:00+00:00", (), None),
    # Presence unknown (Redis down): mail.
    ([(3, "2026-11-18T10:00:00+00:00")], 2, 0, None, "2026-11-18T10:30:00+00:00", (3,), None),
    # Over midnight in Warsaw, over the night the clocks go back (25 Oct 2026, 03:00 CEST is
    # 02:00 CET) and over Christmas: elapsed time, whatever the calendar says.
    ([(3, "2026-11-18T22:59:00+00:00")], 0, 0, False, "2026-11-18T23:00:59+00:00", (), "2026-11-18T23:01:00+00:00"),
    ([(3, "2026-10-25T00:59:00+00:00")], 0, 0, False, "2026-10-25T01:01:00+00:00", (3,), None),
    ([(3, "2026-03-29T00:59:30+00:00")], 0, 0, False, "2026-03-29T01:01:29+00:00", (), "2026-03-29T01:01:30+00:00"),
    ([(3, "2026-12-24T18:00:00+00:00")], 0, 0, False, "2026-12-24T18:02:00+00:00", (3,), None),
])
def test_when_unread_replies_are_mailed(replies: list[tuple[int, str]], read: int, mailed: int, online: bool | None,
                                        now: str, send: tuple[int, ...], due: str | None) -> None:
    decision = replies_mail([Reply(seq, _at(at)) for seq, at in replies], read, mailed, online, _at(now), D)
    assert decision.send == send
    assert decision.due_at == (_at(due) if due else None)


def test_the_delay_must_be_positive() -> None:
    with pytest.raises(ValueError):
        replies_mail([], 0, 0, False, WED, timedelta(0))


# ------------------------------------------------------------------ on call
@pytest.mark.parametrize(("severity", "urgency_", "opened", "steps"), [
    # Critical on a Sunday night: on-call at once, the warning 2 h later, the breach after 16 h.
    ("critical", "critical", "2026-11-22T23:00:00+01:00",
     [("ticket.critical", "2026-11-22T23:00:00+01:00"), ("sla.warning", "2026-11-23T01:00:00+01:00"),
      ("sla.breached", "2026-11-23T15:00:00+01:00")]),
    # Critical over the spring DST jump: two clock hours are 2 real hours.
    ("critical", "critical", "2026-03-29T01:30:00+01:00",
     [("ticket.critical", "2026-03-29T01:30:00+01:00"), ("sla.warning", "2026-03-29T04:30:00+02:00"),
      ("sla.breached", "2026-03-29T18:30:00+02:00")]),
    # Urgent on Friday 16:30: half an hour on Friday, 1.5 h on Monday.
    ("major", "urgent", "2026-11-20T16:30:00+01:00",
     [("sla.warning", "2026-11-23T10:30:00+01:00"), ("sla.breached", "2026-11-25T16:30:00+01:00")]),
    # Urgent at midnight before a working day: counted from 9:00.
    ("major", "urgent", "2026-11-18T00:00:00+01:00",
     [("sla.warning", "2026-11-18T11:00:00+01:00"), ("sla.breached", "2026-11-20T17:00:00+01:00")]),
    # Routine the day before Christmas Eve: 24 working hours skip 24-26 Dec and the weekend.
    ("minor", "routine", "2026-12-23T16:30:00+01:00",
     [("sla.warning", "2026-12-30T16:30:00+01:00"), ("sla.breached", "2026-12-31T16:30:00+01:00")]),
    # Routine over the autumn DST change (25 Oct 2026): working hours in local time.
    ("question", "routine", "2026-10-23T10:00:00+02:00",
     [("sla.warning", "2026-10-28T10:00:00+01:00"), ("sla.breached", "2026-11-03T10:00:00+01:00")]),
])
def test_the_oncall_escalations_of_a_ticket_nobody_answers(severity: str, urgency_: str, opened: str,
                                                           steps: list[tuple[str, str]]) -> None:
    assert urgency(severity) == urgency_
    plan = oncall_plan(POLICY.sla, severity, _at(opened), CAL)
    assert [(s.event, s.at) for s in plan] == [(event, _at(at)) for event, at in steps]
    assert all(s.channels == ("mail", "sms") for s in plan)


def test_only_escalations_reach_the_oncall_team() -> None:
    for event in ("ticket.critical", "sla.warning", "sla.breached"):
        assert oncall_channels(event) == ("mail", "sms")
    assert oncall_channels("ticket.opened") == ()


def test_oncall_and_sms_settings() -> None:
    s = Settings.from_env({"POMOC_ONCALL_EMAILS": "dyzur@pomoc.pl, szef@pomoc.pl",
                           "POMOC_ONCALL_PHONES": "+48 500 600 700,48600700800", "POMOC_SMS_GATEWAY": "smsapi",
                           "POMOC_SMS_TOKEN": "t0k3n", "POMOC_SMS_FROM": "Pomoc", "POMOC_MAIL_DELAY": "300"})
    assert s.oncall_emails == ("dyzur@pomoc.pl", "szef@pomoc.pl")
    assert s.oncall_phones == ("+48500600700", "48600700800")
    assert (s.sms_gateway, s.sms_url, s.sms_token, s.sms_from) == ("smsapi", "https://api.smsapi.pl/sms.do",
                                                                   "t0k3n", "Pomoc")
    assert s.mail_delay == timedelta(minutes=5)
    relay = Settings.from_env({"POMOC_ONCALL_PHONES": "+48500600700", "POMOC_SMS_URL": "https://sms.example/send"})
    assert (relay.sms_gateway, relay.sms_url) == ("pomoc", "https://sms.example/send")


@pytest.mark.parametrize(("env", "name"), [
    ({"POMOC_ONCALL_EMAILS": "dyzur"}, "POMOC_ONCALL_EMAILS"),
    ({"POMOC_ONCALL_PHONES": "+48 500-600", "POMOC_SMS_URL": "https://s.example"}, "POMOC_ONCALL_PHONES"),
    ({"POMOC_ONCALL_PHONES": "+48500600700"}, "POMOC_SMS_URL"),
    ({"POMOC_SMS_GATEWAY": "twilio"}, "POMOC_SMS_GATEWAY"),
    ({"POMOC_SMS_GATEWAY": "smsapi"}, "POMOC_SMS_TOKEN"),
    ({"POMOC_SMS_URL": "ftp://sms.example"}, "POMOC_SMS_URL"),
    ({"POMOC_MAIL_DELAY": "0"}, "POMOC_MAIL_DELAY"),
    ({"POMOC_MAIL_DELAY": "soon"}, "POMOC_MAIL_DELAY"),
])
def test_bad_oncall_settings_name_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env(env)
