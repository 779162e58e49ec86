"""The words of Pomoc's mails and SMS, in Polish and English.

`render(view, calendar)` turns what a mail is about (`MailView`: its kind, ticket,
data and links) into a subject, a plain-text body and an HTML body. Both bodies are
built from one list of blocks, so they always say the same; everything that comes
from people (titles, replies, names) is escaped in the HTML. Every mail says it
comes from an address nobody reads (seed 001) and where to answer instead; a shop
user's mail says how to stop it. Times are the calendar's local time, worded as the
chat words them (`server.rules.sla.format_due`). `sms_text` is the on-call SMS.

Pure module: standard library and the other rules only; it must not import
starlette, redis, sqlalchemy, asyncio or jwt, and it reads no clock.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from server.rules.calendar import WorkingCalendar, to_local
from server.rules.severity import Severity, check_lang, label
from server.rules.sla import format_due


@dataclass(frozen=True, slots=True)
class ReplyLine:
    author: str
    at: datetime
    body: str


@dataclass(frozen=True, slots=True)
class Links:
    panel: str | None = None  # the ticket in the shop's admin panel
    unsubscribe_ticket: str | None = None
    unsubscribe_all: str | None = None
    console: str | None = None  # the agent console (on-call mail)


@dataclass(frozen=True, slots=True)
class MailView:
    kind: str
    lang: str
    ticket_id: int | None
    title: str
    data: Mapping[str, Any] = field(default_factory=dict)
    links: Links = field(default_factory=Links)
    replies: tuple[ReplyLine, ...] = ()


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str


# A block of a mail: a paragraph, labelled fields, a quoted reply, a link, the footer.
Block = tuple[str, Any]

_T: Mapping[str, Mapping[str, str]] = {
    "pl": {
        "ack.subject": "[Pomoc #{id}] Przyjęliśmy zgłoszenie: {title}",
        "ack.intro": "Dziękujemy, przyjęliśmy Twoje zgłoszenie i przekazaliśmy je do realizacji.",
        "ack.chat": "Potwierdzenie w zgłoszeniu:",
        "field.number": "Numer zgłoszenia",
        "field.title": "Tytuł",
        "field.severity": "Waga",
        "field.due": "Oczekiwany czas reakcji",
        "field.queued": "W kolejce do najbliższego otwarcia",
        "resolved.subject": "[Pomoc #{id}] Zgłoszenie rozwiązane: {title}",
        "resolved.intro": "Zakończyliśmy prace nad Twoim zgłoszeniem i oznaczyliśmy je jako rozwiązane ({agent}).",
        "resolved.more": "Jeśli problem nie zniknął, odpisz w zgłoszeniu w panelu — wróci do obsługi.",
        "resolved.ask": "Czy problem został rozwiązany? Odpowiedz w zgłoszeniu w panelu: „Tak” — i oceń naszą "
                        "pomoc od 1 do 5 (zgłoszenie zostanie zamknięte), albo „Nie” — wróci do obsługi.",
        "resolved.open": "Odpowiedz w panelu",
        "closed.subject": "[Pomoc #{id}] Zgłoszenie zamknięte: {title}",
        "closed.intro": "Zgłoszenie zostało zamknięte ({agent}).",
        "closed.more": "Nowy problem? Załóż nowe zgłoszenie w panelu (przycisk POMOC).",
        "reminder.subject": "[Pomoc #{id}] Czekamy na Twoją odpowiedź: {title}",
        "silent_resolved.subject": "[Pomoc #{id}] Zgłoszenie oznaczone jako rozwiązane: {title}",
        "replies.intro": "Wsparcie odpowiedziało w zgłoszeniu #{id} „{title}”:",
        "open": "Zgłoszenie w panelu",
        "noreply": ("Ta wiadomość została wysłana automatycznie z adresu, który nie jest odczytywany — "
                    "prosimy na nią nie odpowiadać. Odpowiedz w zgłoszeniu w panelu sklepu (przycisk POMOC)."),
        "unsubscribe.ticket": "Wypisz się z wiadomości o tym zgłoszeniu",
        "unsubscribe.all": "Wypisz się ze wszystkich wiadomości Pomocy",
        "oncall.ticket.critical": "KRYTYCZNE zgłoszenie",
        "oncall.sla.warning": "Brak reakcji na zgłoszenie",
        "oncall.sla.breached": "Przekroczony czas reakcji",
        "oncall.subject": "[Pomoc dyżur] {what} #{id}: {title} ({shop})",
        "oncall.intro": "{what}: nikt z zespołu jeszcze nie odpowiedział.",
        "oncall.critical_intro": "{what}: sklep może nie sprzedawać albo nie obsługiwać zamówień.",
        "field.shop": "Sklep",
        "field.opened": "Otwarte",
        "field.step": "Termin dotyczy",
        "step.first_response": "pierwszej reakcji",
        "step.next_response": "odpowiedzi na kolejną wiadomość klienta",
        "oncall.console": "Konsola agenta",
        "oncall.footer": "Wiadomość automatyczna Pomocy dla dyżuru; adres nadawcy nie jest odczytywany.",
        "attachment": "(załącznik — zobacz w panelu)",
    },
    "en": {
        "ack.subject": "[Pomoc #{id}] We have received your ticket: {title}",
        "ack.intro": "Thank you, we have received your ticket and passed it on to be handled.",
        "ack.chat": "The acknowledgment in the ticket:",
        "field.number": "Ticket number",
        "field.title": "Title",
        "field.severity": "Severity",
        "field.due": "Expected reaction",
        "field.queued": "Queued until the next opening",
        "resolved.subject": "[Pomoc #{id}] Ticket resolved: {title}",
        "resolved.intro": "We have finished working on your ticket and marked it resolved ({agent}).",
        "resolved.more": "If the problem is still there, reply in the ticket in the panel and it goes back to support.",
        "resolved.ask": "Has the problem been solved? Answer in the ticket in the panel: \"Yes\" — and rate our help "
                        "from 1 to 5 (the ticket is then closed), or \"No\" — it goes back to support.",
        "resolved.open": "Answer in the panel",
        "closed.subject": "[Pomoc #{id}] Ticket closed: {title}",
        "closed.intro": "The ticket is closed ({agent}).",
        "closed.more": "A new problem? Open a new ticket in the panel (the POMOC button).",
        "reminder.subject": "[Pomoc #{id}] We are waiting for your reply: {title}",
        "silent_resolved.subject": "[Pomoc #{id}] Ticket marked resolved: {title}",
        "replies.intro": "Support replied in ticket #{id} “{title}”:",
        "open": "The ticket in the panel",
        "noreply": ("This message was sent automatically from an address nobody reads — please do not reply "
                    "to it. Answer in the ticket in your shop's admin panel (the POMOC button)."),
        "unsubscribe.ticket": "Unsubscribe from mail about this ticket",
        "unsubscribe.all": "Unsubscribe from all Pomoc mail",
        "oncall.ticket.critical": "CRITICAL ticket",
        "oncall.sla.warning": "No reaction to a ticket",
        "oncall.sla.breached": "Reaction deadline passed",
        "oncall.subject": "[Pomoc on call] {what} #{id}: {title} ({shop})",
        "oncall.intro": "{what}: nobody on the team has answered yet.",
        "oncall.critical_intro": "{what}: the shop may be unable to sell or handle orders.",
        "field.shop": "Shop",
        "field.opened": "Opened",
        "field.step": "Deadline for",
        "step.first_response": "the first reaction",
        "step.next_response": "the answer to the customer's next message",
        "oncall.console": "Agent console",
        "oncall.footer": "An automatic Pomoc mail for the on-call team; the sender's address is not read.",
        "attachment": "(an attachment — see the panel)",
    },
}


def _pl_plural(n: int, one: str, few: str, many: str) -> str:
    if n == 1:
        return one
    if n % 10 in (2, 3, 4) and n % 100 not in (12, 13, 14):
        return few
    return many


def replies_subject(ticket_id: int | None, title: str, count: int, lang: str) -> str:
    if check_lang(lang) == "pl":
        what = _pl_plural(count, "nowa odpowiedź", "nowe odpowiedzi", "nowych odpowiedzi")
        return f"[Pomoc #{ticket_id}] {count} {what}: {title}"
    return f"[Pomoc #{ticket_id}] {count} new {'reply' if count == 1 else 'replies'}: {title}"


def _when(at: datetime, calendar: WorkingCalendar) -> str:
    local = to_local(calendar, at)
    return f"{local.day:02d}.{local.month:02d}.{local.year}, {local.hour}:{local.minute:02d}"


def _instant(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _severity(value: Any, lang: str) -> str:
    try:
        return label(Severity(str(value)), lang)
    except ValueError:
        return str(value or "—")


def _footer(t: Mapping[str, str], links: Links) -> list[Block]:
    blocks: list[Block] = [("footer", t["noreply"])]
    if links.unsubscribe_ticket:
        blocks.append(("small_link", (t["unsubscribe.ticket"], links.unsubscribe_ticket)))
    if links.unsubscribe_all:
        blocks.append(("small_link", (t["unsubscribe.all"], links.unsubscribe_all)))
    return blocks


def _customer_blocks(view: MailView, t: Mapping[str, str], calendar: WorkingCalendar) -> tuple[str, list[Block]]:
    data, lang = view.data, view.lang
    values = {"id": view.ticket_id, "title": view.title, "agent": data.get("agent") or "Pomoc"}
    blocks: list[Block] = []
    if view.kind == "ack":
        subject = t["ack.subject"].format(**values)
        fields = [(t["field.number"], f"#{view.ticket_id}"), (t["field.title"], view.title),
                  (t["field.severity"], _severity(data.get("severity"), lang))]
        if data.get("due"):
            fields.append((t["field.due"], str(data["due"])))
        if data.get("queued"):
            fields.append((t["field.queued"], str(data["queued"])))
        blocks += [("p", t["ack.intro"]), ("fields", fields)]
        if data.get("acknowledgment"):
            blocks += [("p", t["ack.chat"]), ("quote", (None, str(data["acknowledgment"])))]
    elif view.kind == "resolved":
        # Seed 002: closed when both agree it is solved — the mail asks, the panel answers.
        subject = t["resolved.subject"].format(**values)
        blocks += [("p", t["resolved.intro"].format(**values)), ("p", t["resolved.ask"])]
        if view.links.panel:
            blocks.append(("link", (t["resolved.open"], view.links.panel)))
            return subject, blocks + _footer(t, view.links)
    elif view.kind == "closed":
        subject = t["closed.subject"].format(**values)
        blocks += [("p", t["closed.intro"].format(**values)), ("p", t["closed.more"])]
    elif view.kind in ("reminder", "silent_resolved"):
        subject = t[f"{view.kind}.subject"].format(**values)
        blocks.append(("p", str(data.get("body", ""))))
    elif view.kind == "replies":
        subject = replies_subject(view.ticket_id, view.title, len(view.replies), lang)
        blocks.append(("p", t["replies.intro"].format(**values)))
        for reply in view.replies:
            blocks.append(("quote", (f"{reply.author}, {_when(reply.at, calendar)}",
                                     reply.body.strip() or t["attachment"])))
    else:
        raise ValueError(f"no wording for a {view.kind!r} mail")
    if view.links.panel:
        blocks.append(("link", (t["open"], view.links.panel)))
    return subject, blocks + _footer(t, view.links)


def _oncall_blocks(view: MailView, t: Mapping[str, str], calendar: WorkingCalendar) -> tuple[str, list[Block]]:
    data, lang = view.data, view.lang
    event = str(data.get("event", ""))
    what = t.get(f"oncall.{event}", event)
    shop = str(data.get("shop_name") or data.get("shop") or "—")
    subject = t["oncall.subject"].format(what=what, id=view.ticket_id, title=view.title, shop=shop)
    intro = t["oncall.critical_intro" if event == "ticket.critical" else "oncall.intro"].format(what=what)
    fields = [(t["field.number"], f"#{view.ticket_id}"), (t["field.title"], view.title), (t["field.shop"], shop),
              (t["field.severity"], _severity(data.get("severity"), lang))]
    opened = _instant(data.get("created_at"))
    if opened is not None:
        fields.append((t["field.opened"], _when(opened, calendar)))
    due = _instant(data.get("sla_due_at"))
    if due is not None:
        fields.append((t["field.due"], format_due(due, calendar, lang)))
    step = data.get("step")
    if f"step.{step}" in t:
        fields.append((t["field.step"], t[f"step.{step}"]))
    blocks: list[Block] = [("p", intro), ("fields", fields)]
    if view.links.console:
        blocks.append(("link", (t["oncall.console"], view.links.console)))
    blocks.append(("footer", t["oncall.footer"]))
    return subject, blocks


def render(view: MailView, calendar: WorkingCalendar) -> Rendered:
    t = _T[check_lang(view.lang)]
    if view.kind == "oncall":
        subject, blocks = _oncall_blocks(view, t, calendar)
    else:
        subject, blocks = _customer_blocks(view, t, calendar)
    return Rendered(_one_line(subject), _text(blocks), _html(blocks, view.lang, subject))


def _one_line(text: str) -> str:
    """A subject never spans lines (a title holds no newline, but a subject must not either)."""
    return " ".join(text.split())[:300]


def _text(blocks: list[Block]) -> str:
    out: list[str] = []
    for kind, value in blocks:
        if kind == "p":
            out.append(value)
        elif kind == "fields":
            out.append("\n".join(f"{name}: {text}" for name, text in value))
        elif kind == "quote":
            head, body = value
            quoted = "\n".join(f"> {line}" if line else ">" for line in body.splitlines() or [""])
            out.append(f"{head}:\n{quoted}" if head else quoted)
        elif kind in ("link", "small_link"):
            name, url = value
            out.append(f"{name}: {url}")
        elif kind == "footer":
            out.append(f"-- \n{value}")
    return "\n\n".join(out) + "\n"


_STYLE = ("font-family:system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;font-size:15px;"
          "line-height:1.5;color:#1d2733")


def _html(blocks: list[Block], lang: str, subject: str) -> str:
    e = html.escape
    out: list[str] = []
    for kind, value in blocks:
        if kind == "p":
            out.append(f"<p>{e(value)}</p>")
        elif kind == "fields":
            rows = "".join(f'<tr><th align="left" style="padding:2px 12px 2px 0;font-weight:600">{e(name)}</th>'
                           f"<td>{e(text)}</td></tr>" for name, text in value)
            out.append(f'<table role="presentation" style="border-collapse:collapse;margin:8px 0">{rows}</table>')
        elif kind == "quote":
            head, body = value
            lines = "<br>".join(e(line) for line in body.splitlines())
            caption = f'<div style="color:#5b6b7b;font-size:13px">{e(head)}</div>' if head else ""
            out.append(f'{caption}<blockquote style="margin:4px 0 14px;padding:6px 12px;border-left:3px solid '
                       f'#17324d;background:#f4f6f9">{lines}</blockquote>')
        elif kind == "link":
            name, url = value
            out.append(f'<p><a href="{e(url)}" style="color:#17324d;font-weight:600">{e(name)}</a></p>')
        elif kind == "small_link":
            name, url = value
            out.append(f'<p style="font-size:12px;margin:2px 0"><a href="{e(url)}" style="color:#5b6b7b">'
                       f"{e(name)}</a></p>")
        elif kind == "footer":
            out.append(f'<hr style="border:0;border-top:1px solid #e1e7ee;margin:20px 0 10px">'
                       f'<p style="font-size:12px;color:#5b6b7b">{e(value)}</p>')
    body = "\n".join(out)
    return (f'<!doctype html>\n<html lang="{e(lang)}"><head><meta charset="utf-8"><title>{e(subject)}</title>'
            f'</head>\n<body style="{_STYLE}">\n{body}\n</body></html>\n')


def sms_text(data: Mapping[str, Any], ticket_id: int | None, calendar: WorkingCalendar, lang: str = "pl") -> str:
    """The on-call SMS: what happened, which ticket and shop, the deadline (short)."""
    t = _T[check_lang(lang)]
    event = str(data.get("event", ""))
    what = t.get(f"oncall.{event}", event)
    title = " ".join(str(data.get("title", "")).split())
    if len(title) > 50:
        title = title[:49] + "…"
    shop = " ".join(str(data.get("shop_name") or data.get("shop") or "").split())[:30]
    due = _instant(data.get("sla_due_at"))
    # A breach of a later step says so: the customer wrote again and nobody answered.
    again = data.get("step") == "next_response"
    word = ("Odpowiedź na kolejną wiadomość" if again else "Reakcja") if lang == "pl" else (
        "Reply to the next message" if again else "Reaction")
    tail = f" {word} {format_due(due, calendar, check_lang(lang))}." if due is not None else ""
    return f"Pomoc: {what} #{ticket_id} {shop}: {title}.{tail}"
