"""What Pomoc tells people by mail and SMS, and when: the pure decisions.

- The address a shop user is mailed at: the token's `email` claim when it is a
  plausible single address (`mail_address`); a user without one gets no mail.
- The notices stored in the transaction of the event that causes them (seed 000:
  receipt is always confirmed by e-mail, and so is the end of the work): the
  acknowledgment of a new ticket, in the chat acknowledgment's own words and with
  its deadline (`acknowledgment_notice`); an agent resolving or closing a ticket
  (`status_notice`); the silent-customer reminders and the automatic resolution
  (seed 002), with the text of the system message they post.
- When a ticket's unread agent replies are mailed (`replies_mail`): one mail holding
  every reply the user has neither read in the panel nor been mailed yet, once the
  newest of them is `delay` old (a burst of replies waits for the agent to finish,
  but no reply waits longer than twice the delay), and only while the user has no
  connection open.
- On-call escalations (seed 003: critical at once by e-mail and SMS, urgent after
  2 h and routine after 24 h without a reaction): the urgency of a severity, the
  plan of escalations a ticket nobody answers goes through (`oncall_plan`, the
  instants the SLA job stores and fires), and the channels of each (`oncall_channels`).

Pure module: it must not import starlette, redis, sqlalchemy, asyncio or jwt, and it
reads no clock (`now` comes in).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parseaddr
from enum import StrEnum
from typing import Any

from server.principal import Principal
from server.rules.calendar import WorkingCalendar
from server.rules.records import Author, NewTicket, Ticket
from server.rules.severity import Severity
from server.rules.sla import ON_CALL, SlaPolicy, due_at, format_due, format_opening, warning_at

# One address: a local part and a domain, nothing that could smuggle a second
# recipient or a header (RFC 5321's limits: 64 + 1 + 255, 254 in practice).
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}")
_DOMAIN = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                     r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")

# The kinds of notice a shop user can get, and the on-call team's.
CUSTOMER_KINDS = ("ack", "resolved", "closed", "reminder", "silent_resolved", "replies")
ONCALL_KIND = "oncall"


def mail_address(text: str | None) -> str | None:
    """`text` as one mail address, or None when it is not one."""
    if not text or len(text) > 254 or any(c in text for c in "\r\n\t ,;<>\"()"):
        return None
    name, address = parseaddr(text)
    if name or address != text or address.count("@") != 1:
        return None
    local, _, domain = address.partition("@")
    if not _LOCAL.fullmatch(local) or local.startswith(".") or local.endswith(".") or ".." in local:
        return None
    if not _DOMAIN.fullmatch(domain):
        return None
    return address


@dataclass(frozen=True, slots=True)
class Notice:
    """A mail to queue with an event. `to` None: the ticket's opener, at the address
    stored for them (none stored: no mail)."""

    kind: str
    data: Mapping[str, Any] = field(default_factory=dict)
    to: str | None = None


def acknowledgment_notice(principal: Principal, new: NewTicket, first: Sequence[tuple[Author, str]],
                          calendar: WorkingCalendar) -> Notice | None:
    """The mail confirming a new ticket: its title and severity, the expected reaction
    (or the queue until the next opening) as the chat's acknowledgment words them, and
    that acknowledgment itself. None when the opener has no address."""
    to = mail_address(principal.email)
    if to is None:
        return None
    lang = new.lang
    acknowledgment = next((body for author, body in first if author.kind == "system"), "")
    return Notice("ack", {
        "title": new.title,
        "severity": new.severity,
        "acknowledgment": acknowledgment,
        "due": format_due(new.sla_due_at, calendar, lang) if new.sla_due_at else None,
        "queued": format_opening(new.queued_until, calendar, lang) if new.queued_until else None,
    }, to)


def status_notice(principal: Principal, ticket: Ticket, changes: Mapping[str, Any]) -> Notice | None:
    """The mail saying the work is finished: an agent resolved or closed the ticket
    (a customer who marks its own ticket resolved knows already)."""
    status = changes.get("status")
    if not principal.is_agent or status not in ("resolved", "closed") or status == ticket.status:
        return None
    return Notice(str(status), {"agent": principal.name})


def reminder_notice(step: int, body: str) -> Notice:
    """A silent customer's reminder (`step` 0 or 1), with the system message's text."""
    return Notice("reminder", {"step": step + 1, "body": body})


def silent_resolved_notice(body: str) -> Notice:
    return Notice("silent_resolved", {"body": body})


# ------------------------------------------------------------- unread replies
@dataclass(frozen=True, slots=True)
class Reply:
    """An agent's reply in a ticket: its seq and when it was written."""

    seq: int
    at: datetime


@dataclass(frozen=True, slots=True)
class RepliesMail:
    """What to do about a ticket's agent replies now: mail `send` (seqs, oldest first),
    or nothing yet; `due_at` is when they will be due (None: nothing pending, or the
    user is connected and sees them in the panel)."""

    send: tuple[int, ...] = ()
    due_at: datetime | None = None


def replies_mail(replies: Sequence[Reply], read_seq: int, mailed_seq: int, online: bool | None,
                 now: datetime, delay: timedelta) -> RepliesMail:
    """Whether a ticket's unread agent replies go out by mail now.

    Pending are the replies after both the user's read cursor and the last reply
    already mailed. They are due once the newest is `delay` old, and at the latest
    `2 × delay` after the oldest. A user with a connection open (`online`) gets no
    mail: the panel shows the replies, and a mail follows only if they leave without
    reading them. `online` None means presence is unknown (Redis unreachable): mail,
    since the read cursors still keep what was read out of it.
    """
    if delay <= timedelta(0):
        raise ValueError("the mail delay must be positive")
    pending = sorted((r for r in replies if r.seq > max(read_seq, mailed_seq)), key=lambda r: r.seq)
    if not pending:
        return RepliesMail()
    due = min(max(r.at for r in pending) + delay, min(r.at for r in pending) + 2 * delay)
    if now < due:
        return RepliesMail(due_at=due)
    if online:
        return RepliesMail()
    return RepliesMail(send=tuple(r.seq for r in pending))


# ------------------------------------------------------------------ on call
class Urgency(StrEnum):
    CRITICAL = "critical"  # the shop cannot sell or handle orders: mail and SMS at once
    URGENT = "urgent"  # a component down, needs a quick reaction: escalated after 2 h
    ROUTINE = "routine"  # everything else: escalated after 24 h


_URGENCY: Mapping[Severity, Urgency] = {
    Severity.CRITICAL: Urgency.CRITICAL,
    Severity.MAJOR: Urgency.URGENT,
    Severity.MINOR: Urgency.ROUTINE,
    Severity.QUESTION: Urgency.ROUTINE,
    Severity.SUGGESTION: Urgency.ROUTINE,
}
ONCALL_EVENTS = ("ticket.critical", "sla.warning", "sla.breached")
CHANNELS = ("mail", "sms")


def urgency(severity: str) -> Urgency:
    return _URGENCY[Severity(severity)]


def oncall_channels(event: str) -> tuple[str, ...]:
    """How the on-call team hears of an escalation event (seed 003: e-mail and SMS
    together, never the phone); other events are the webhook's only."""
    return CHANNELS if event in ONCALL_EVENTS else ()


@dataclass(frozen=True, slots=True)
class Escalation:
    at: datetime
    event: str
    channels: tuple[str, ...]


def oncall_plan(policy: SlaPolicy, severity: str, opened_at: datetime, calendar: WorkingCalendar
                ) -> tuple[Escalation, ...]:
    """The escalations of a ticket nobody reacts to, in order: a critical one at once,
    then (every severity) the warning after the POMOC_SLA_WARNING target (2 h for
    urgent tickets, 24 working hours for routine ones by default) and the breach of
    the reaction deadline. The SLA job stores and fires these same instants."""
    sev = Severity(severity)
    steps: list[Escalation] = []
    if sev in ON_CALL:
        steps.append(Escalation(opened_at, "ticket.critical", oncall_channels("ticket.critical")))
    steps.append(Escalation(warning_at(policy, sev, opened_at, calendar), "sla.warning",
                            oncall_channels("sla.warning")))
    steps.append(Escalation(due_at(policy, sev, opened_at, calendar), "sla.breached",
                            oncall_channels("sla.breached")))
    return tuple(steps)
