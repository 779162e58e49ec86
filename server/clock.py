"""Clocks: the only place that reads the wall clock.

Every rule takes `now` from a `Clock` passed in, so tests and staging can move time
by hand (`FixedClock`) or start it at a chosen instant (`OffsetClock`, `POMOC_CLOCK`).
All instants are UTC-aware datetimes. Pure module: imports only the standard library.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """The real time, UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class OffsetClock:
    """Starts at `start` and advances in real time (POMOC_CLOCK for staging and demos)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("the start of an OffsetClock must carry a timezone")
        self._offset = start - datetime.now(UTC)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset


class FixedClock:
    """Stands still until moved: for tests and `jobs --once --at`."""

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("a FixedClock needs a timezone-aware instant")
        self._at = at.astimezone(UTC)

    def now(self) -> datetime:
        return self._at

    def set(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("a FixedClock needs a timezone-aware instant")
        self._at = at.astimezone(UTC)

    def advance(self, delta: timedelta) -> None:
        self._at += delta
