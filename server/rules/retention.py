"""Ticket lifecycle and retention rules: pure functions of the configuration and `now`.

Seed 002: a ticket waiting on the customer gets two reminders after two weeks of
silence and is then closed as resolved. Seed 004: resolved tickets are closed, stay
visible for two to three months, then are deleted. What happens to the database is
`server.store.lifecycle`; this module only says when. Pure: it imports only the
standard library.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def parse_duration(text: str, what: str) -> timedelta:
    """"14d", "36h", "90m", "30s" → timedelta; a clear error otherwise."""
    match = re.fullmatch(r"\s*(\d+)\s*([dhms])\s*", text)
    if not match:
        raise ValueError(f"{what}: expected a duration like 14d, 36h or 90m, got {text!r}")
    value = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    if value <= timedelta(0):
        raise ValueError(f"{what}: must be longer than zero")
    return value


@dataclass(frozen=True, slots=True)
class LifecyclePolicy:
    # After this much silence while waiting on the customer: first reminder, second
    # reminder, then closed as resolved (all counted from when the wait began).
    reminders: tuple[timedelta, ...] = (timedelta(days=14), timedelta(days=17))
    silent_resolve: timedelta = timedelta(days=21)
    # A resolved ticket with no further word is closed after this.
    resolved_close: timedelta = timedelta(days=7)
    # A closed ticket stays listed and readable this long, then it is purged.
    retention: timedelta = timedelta(days=90)

    def __post_init__(self) -> None:
        steps = list(self.reminders) + [self.silent_resolve]
        if any(later <= earlier for earlier, later in zip(steps, steps[1:], strict=False)):
            raise ValueError("reminders must come in order, and before the silent ticket is resolved")

    @classmethod
    def from_config(cls, reminders: str = "", silent_resolve: str = "", resolved_close: str = "",
                    retention: str = "") -> LifecyclePolicy:
        base = cls()
        return cls(
            reminders=tuple(parse_duration(p, "POMOC_SILENT_REMINDERS") for p in reminders.split(",") if p.strip())
            or base.reminders,
            silent_resolve=parse_duration(silent_resolve, "POMOC_SILENT_RESOLVE") if silent_resolve
            else base.silent_resolve,
            resolved_close=parse_duration(resolved_close, "POMOC_RESOLVED_CLOSE") if resolved_close
            else base.resolved_close,
            retention=parse_duration(retention, "POMOC_RETENTION") if retention else base.retention,
        )

    def reminder_due_before(self, step: int, now: datetime) -> datetime:
        """Tickets waiting since before this instant are due for reminder `step` (0-based)."""
        return now - self.reminders[step]

    def silent_resolve_before(self, now: datetime) -> datetime:
        return now - self.silent_resolve

    def close_resolved_before(self, now: datetime) -> datetime:
        return now - self.resolved_close

    def purge_closed_before(self, now: datetime) -> datetime:
        """Closed at or before this instant: past retention. A ticket closed exactly
        `retention` ago goes; one closed a second later stays."""
        return now - self.retention

    def visible_until(self, closed_at: datetime) -> datetime:
        return closed_at + self.retention


# The system messages of the lifecycle, in the language of the shop user who opened
# the ticket (Polish unless their token or widget says English).
REMINDER_TEXT = {
    "pl": ("Czekamy na Twoją odpowiedź w tym zgłoszeniu. Jeśli problem jest już rozwiązany, daj nam znać — "
           "albo po prostu oznacz zgłoszenie jako rozwiązane.",
           "Przypominamy po raz drugi: wciąż czekamy na Twoją odpowiedź. Bez niej wkrótce zamkniemy zgłoszenie "
           "jako rozwiązane."),
    "en": ("We are waiting for your reply in this ticket. If the problem is solved already, let us know — "
           "or simply mark the ticket resolved.",
           "A second reminder: we are still waiting for your reply. Without it we will soon close the ticket "
           "as resolved."),
}
SILENT_RESOLVED_TEXT = {
    "pl": ("Nie otrzymaliśmy odpowiedzi mimo dwóch przypomnień, więc oznaczamy zgłoszenie jako rozwiązane. "
           "Jeśli problem wróci, napisz tutaj albo załóż nowe zgłoszenie."),
    "en": ("We received no reply after two reminders, so we are marking the ticket resolved. "
           "If the problem comes back, write here or open a new ticket."),
}
CLOSED_TEXT = {
    "pl": "Zgłoszenie zostało zamknięte. Nowy problem? Załóż nowe zgłoszenie.",
    "en": "The ticket is closed. A new problem? Open a new ticket.",
}
REOPENED_TEXT = {
    "pl": "Klient odpisał — zgłoszenie wraca do obsługi.",
    "en": "The customer replied — the ticket is back with support.",
}


def text(catalogue: dict[str, str], lang: str) -> str:
    return catalogue.get(lang, catalogue["pl"])


def reminder_text(step: int, lang: str = "pl") -> str:
    texts = REMINDER_TEXT.get(lang, REMINDER_TEXT["pl"])
    return texts[min(step, len(texts) - 1)]
