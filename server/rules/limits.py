"""Fair-use limits as values: "N per period" with the burst and pacing they allow.

A limit is a bucket that refills continuously (a generic cell rate algorithm): `N`
requests at once, then one every `period / N`. The arithmetic here is what the Redis
script in `server.realtime.ratelimit` applies. Pure module: standard library only; it
must not import starlette, redis, sqlalchemy, asyncio or jwt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True, slots=True)
class Limit:
    count: int
    period: timedelta

    @property
    def interval_ms(self) -> float:
        return self.period.total_seconds() * 1000 / self.count

    @property
    def tolerance_ms(self) -> float:
        # A burst of `count` requests is allowed at once.
        return self.interval_ms * (self.count - 1)


def parse_limit(text: str, what: str) -> Limit | None:
    """"30/10s", "1000/1m", "50/1d"; "off" disables the limit."""
    if text.strip().lower() in ("off", "none", "0"):
        return None
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d*)\s*([smhd])\s*", text)
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"{what}: expected COUNT/PERIOD such as 30/10s, 1000/1m or 50/1d, or off; got {text!r}")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(3)]
    return Limit(int(match.group(1)), timedelta(**{unit: int(match.group(2) or 1)}))


@dataclass(frozen=True, slots=True)
class Limits:
    """Defaults that a normal shop owner never meets, and a flood always does."""

    user_messages: Limit | None = Limit(30, timedelta(seconds=10))
    shop_messages: Limit | None = Limit(120, timedelta(seconds=10))
    shop_tickets: Limit | None = Limit(50, timedelta(days=1))
    shop_uploads: Limit | None = Limit(100, timedelta(hours=1))
    agent_messages: Limit | None = Limit(60, timedelta(seconds=10))
    # "This article answered my question" clicks: counted for the help centre's
    # statistics, which a flood would skew.
    shop_deflections: Limit | None = Limit(30, timedelta(hours=1))
    # Concurrent connections of one user (tabs, devices, a leaking integration).
    user_connections: int = 20
