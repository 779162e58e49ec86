"""Opening-hours specs as configured: "mon-fri 09:00-17:00; sat 09:00-13:00".

The one parser of weekly opening hours, used for `POMOC_HOURS` and for the plans'
own hours (`POMOC_PLANS`). Pure module: it must not import starlette, redis,
sqlalchemy, asyncio or jwt.
"""

from __future__ import annotations

import re
from datetime import time

_DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
_DAY_NAMES = {v: k for k, v in _DAYS.items()}


def parse_span(text: str, what: str) -> tuple[time, time]:
    match = re.fullmatch(r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})", text.strip())
    if not match:
        raise ValueError(f"{what}: expected HH:MM-HH:MM, got {text!r}")
    h1, m1, h2, m2 = map(int, match.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59 or (h1, m1) >= (h2, m2):
        raise ValueError(f"{what}: {text!r} is not an opening span within one day")
    return time(h1, m1), time(h2, m2)


def parse_hours(text: str, what: str = "POMOC_HOURS") -> dict[int, tuple[time, time]]:
    """Weekly hours: day or day range, a space, HH:MM-HH:MM; parts joined by ";"."""
    hours: dict[int, tuple[time, time]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        days, _, span = part.partition(" ")
        first, _, last = days.lower().partition("-")
        if first not in _DAYS or (last and last not in _DAYS):
            raise ValueError(f"{what}: unknown day in {part!r} (use mon … sun)")
        start, end = _DAYS[first], _DAYS[last or first]
        if end < start:
            raise ValueError(f"{what}: {days!r} runs backwards")
        for day in range(start, end + 1):
            if day in hours:
                # One opening span per day: a split shift would silently lose a span.
                raise ValueError(f"{what}: {part!r} gives {_DAY_NAMES[day]} a second opening span; "
                                 "one span per day (e.g. 'mon-fri 09:00-17:00; sat 09:00-13:00')")
            hours[day] = parse_span(span, what)
    if not hours:
        raise ValueError(f"{what} names no opening hours")
    return hours
