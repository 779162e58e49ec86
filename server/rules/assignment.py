"""Who gets a ticket: the automatic assignment's choice, and the notes that record it.

- Coverage: an agent whose token names departments covers those; one that names none
  covers every department (and a ticket without a department is anybody's).
- The choice (`choose`): among the online agents covering the ticket's department and
  below capacity, the one with the fewest open assigned tickets; ties go to the one
  assigned least recently (never assigned counts as longest ago), then to the lowest
  id — deterministic, so two runs over the same state agree. `plan` assigns a batch of
  tickets in order, counting each choice into the next one's loads.
- Release (`stale`): an assignee is offline too long when it has no live connection
  now and Pomoc last saw it at or before `now - release_after`.
- The notes: the private notes (`internal`) an assignment and a release add to the
  thread, in the ticket's language.

Pure module: it must not import starlette, redis, sqlalchemy, asyncio or jwt, and it
reads no clock (`now` comes in).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

# Never assigned sorts first among equals.
_NEVER = datetime.min


@dataclass(frozen=True, slots=True)
class Candidate:
    """An online agent as the choice sees it."""

    id: str
    departments: tuple[str, ...] = ()
    last_assigned_at: datetime | None = None


def covers(departments: Sequence[str], department: str | None) -> bool:
    """Does an agent with these departments (none: all) take a ticket of `department`?"""
    return not departments or department is None or department in departments


def _rank(candidate: Candidate, loads: Mapping[str, int]) -> tuple[int, datetime, str]:
    last = candidate.last_assigned_at
    # Compare instants without their zones (all are UTC): datetime.min has none.
    return loads.get(candidate.id, 0), last.replace(tzinfo=None) if last is not None else _NEVER, candidate.id


def choose(department: str | None, candidates: Iterable[Candidate], loads: Mapping[str, int],
           capacity: int) -> Candidate | None:
    """The agent who gets a ticket of `department`, or None when nobody may take it."""
    eligible = [c for c in candidates if covers(c.departments, department) and loads.get(c.id, 0) < capacity]
    if not eligible:
        return None
    return min(eligible, key=lambda c: _rank(c, loads))


def plan(tickets: Sequence[tuple[int, str | None]], candidates: Sequence[Candidate], loads: Mapping[str, int],
         capacity: int, now: datetime) -> dict[int, str]:
    """Assign `(ticket id, department)` in the order given (the inbox's: most urgent
    first); each choice counts into the loads and the recency of the next ones.
    Tickets nobody may take are left out (they stay in the pool)."""
    load = dict(loads)
    by_id = {c.id: c for c in candidates}
    out: dict[int, str] = {}
    for ticket_id, department in tickets:
        chosen = choose(department, by_id.values(), load, capacity)
        if chosen is None:
            continue
        out[ticket_id] = chosen.id
        load[chosen.id] = load.get(chosen.id, 0) + 1
        by_id[chosen.id] = Candidate(chosen.id, chosen.departments, now)
    return out


def stale(present: bool, last_seen_at: datetime | None, now: datetime, release_after: timedelta) -> bool:
    """Has an assignee been offline longer than `release_after`? (An agent Pomoc has
    never seen, e.g. a name typed before agents were known, counts as long gone.)"""
    if present:
        return False
    return last_seen_at is None or last_seen_at <= now - release_after


def _minutes(duration: timedelta) -> str:
    minutes = max(1, round(duration.total_seconds() / 60))
    return f"{minutes} min"


def assigned_note(lang: str, name: str, agent_id: str) -> str:
    """The private note of an automatic assignment."""
    if lang == "en":
        return f"Pomoc: assigned to → {agent_id} ({name}), the least busy agent online."
    return f"Pomoc: przypisane do → {agent_id} ({name}), najmniej zajęta osoba dostępna teraz."


def released_note(lang: str, agent_id: str, release_after: timedelta) -> str:
    """The private note of a release back to the pool."""
    if lang == "en":
        return f"Pomoc: assigned to → — ({agent_id} offline for over {_minutes(release_after)}; back in the pool)."
    return (f"Pomoc: przypisane do → — ({agent_id} poza Pomocą ponad {_minutes(release_after)}; "
            "zgłoszenie wraca do puli).")
