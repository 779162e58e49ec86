"""One scrape of this process's metrics: the backlog read (cached), then the text.

The gauges that live in the database (outbox and notification backlog, tickets in
the off-hours queue) are read when Prometheus asks, at most once per `BACKLOG_TTL`:
scrapes in between, from one Prometheus or several, get the last count, and
concurrent scrapes share one read. A database that does not answer costs the scrape
its backlog gauges' freshness (they keep their last values and
`pomoc_backlog_read_errors` counts it), never the scrape: everything else is in
memory. Nothing here runs unless something scrapes.
"""

from __future__ import annotations

import asyncio
import logging
import time

from server.chat.adapters import Adapters
from server.store.backlog import count_backlog
from server.store.db import DATABASE_DOWN, describe

log = logging.getLogger(__name__)
BACKLOG_TTL = 5.0  # seconds a backlog count is served before it is read again


class Scrape:
    def __init__(self, a: Adapters, ttl: float = BACKLOG_TTL) -> None:
        self.a = a
        self.ttl = ttl
        self._read_at = -float("inf")
        self._reading: asyncio.Task[None] | None = None

    async def render(self) -> bytes:
        """The metrics in Prometheus' text format, the backlog at most `ttl` old."""
        if time.monotonic() - self._read_at >= self.ttl:
            if self._reading is None:
                self._reading = asyncio.ensure_future(self._read())
            reading = self._reading
            # Shielded: a scraper that hangs up does not cancel the read the others wait on.
            await asyncio.shield(reading)
        return self.a.metrics.render()

    async def _read(self) -> None:
        a = self.a
        try:
            found = await asyncio.wait_for(count_backlog(a.engine, a.clock.now()),
                                           a.settings.database_timeout.total_seconds())
        except (*DATABASE_DOWN, TimeoutError) as exc:
            a.metrics.backlog_errors.inc()
            log.warning("metrics.backlog_failed", extra={"error": describe(exc)})
        else:
            a.metrics.backlog(found)
        finally:
            # Failed or not: the next try is a TTL away (a down database is not asked every scrape).
            self._read_at = time.monotonic()
            self._reading = None
