"""The reaction clock a ticket has running now: which deadline, and what a message,
a status change or a new severity does to it.

Seed 003 times every step: a ticket's first reaction is due by its severity's
target, and once an agent has answered, each customer message that follows starts a
new reaction deadline ("next response") on the same calendar and with the same
off-hours rules. While the agent has the last word, or the ticket waits on the
customer, no deadline runs. The ticket row keeps the deadline now in force in
`sla_due_at` (null: none runs), its warning in `sla_warning_at`, when it started in
`sla_started_at`, and its place in the agents' inbox in `inbox_rank` (the plan's
rank while a deadline runs, `IDLE_RANK` while none does).

The rule, per message in commit order:
- an agent's message stops the clock (somebody reacted);
- a customer's message starts one when none runs (the first of a burst counts: a
  customer writing three lines in a row does not push the deadline back), and always
  when it reopens a ticket that waited on them or was resolved;
- Pomoc's own system messages change nothing.
A status change to `waiting_on_customer`, `resolved` or `closed` stops it too.

Pure module: it must not import starlette, redis, sqlalchemy, asyncio or jwt, and it
reads no clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from server.rules.plans import IDLE_RANK

FIRST_RESPONSE = "first_response"
NEXT_RESPONSE = "next_response"
# No deadline runs while the ticket is in one of these.
PAUSED_STATUSES = frozenset({"waiting_on_customer", "resolved", "closed"})


@dataclass(frozen=True, slots=True)
class Running:
    """The ticket's deadline now in force (all None: none runs) and its inbox rank."""

    due_at: datetime | None
    warning_at: datetime | None
    started_at: datetime | None
    rank: int = IDLE_RANK

    @property
    def running(self) -> bool:
        return self.due_at is not None

    def columns(self) -> dict[str, object]:
        """The ticket row's columns for this state."""
        return {"sla_due_at": self.due_at, "sla_warning_at": self.warning_at, "sla_started_at": self.started_at,
                "inbox_rank": self.rank}


STOPPED = Running(None, None, None, IDLE_RANK)

# Starts a next-response clock at an instant (the policy's, for the ticket's severity and plan).
Start = Callable[[datetime], Running]


def after_message(current: Running, author_kind: str, reopens: bool, now: datetime, start: Start
                  ) -> Running | None:
    """The clock after a message by `author_kind` at `now`; None when unchanged."""
    if author_kind == "agent":
        return STOPPED if current != STOPPED else None
    if author_kind != "customer":
        return None
    if reopens or not current.running:
        return start(now)
    return None


def after_status(status: str) -> Running | None:
    """A status change that pauses the clock stops it; others leave it (an agent
    moving a ticket back to open has just acted: nothing is due from them)."""
    return STOPPED if status in PAUSED_STATUSES else None


def step(due_at: datetime | None, first_response_at: datetime | None) -> str | None:
    """Which deadline `due_at` is: the first reaction's until an agent has answered,
    then the next response's; None when none runs."""
    if due_at is None:
        return None
    return FIRST_RESPONSE if first_response_at is None else NEXT_RESPONSE


@dataclass(frozen=True, slots=True)
class Answered:
    """What an agent's answer records for the reports: the first response's working
    seconds (None: not the first), or a next-response step's and whether it was late."""

    first_s: int | None = None
    next_s: int | None = None
    late: bool = False


# Working seconds between two instants on the ticket's calendar (the policy's, bound to it).
Seconds = Callable[[datetime, datetime], int]


def answered(first_response_at: datetime | None, due_at: datetime | None, started_at: datetime | None,
             opened_at: datetime, at: datetime, seconds: Seconds) -> Answered | None:
    """The facts an agent's (public) answer at `at` records, from the clock it stops:
    the ticket's first response (timed from its opening), or the end of a running
    next-response step (timed from the customer message that started it). None when
    it records nothing (the agent already had the last word)."""
    if first_response_at is None:
        return Answered(first_s=seconds(opened_at, at))
    if due_at is None:
        return None
    return Answered(next_s=seconds(started_at or at, at), late=at > due_at)
