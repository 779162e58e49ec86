"""The background jobs, run once as of an instant or forever on a clock.

Each job is safe to run on several workers at once (every state change is an
UPDATE that only one of them wins) and catches its own failures, so one broken
job never stops the others. `python -m server jobs --once --at ISO` runs them all
once as of that instant (assignment's pool included); `python -m server worker` runs them every few seconds;
in embedded mode the web process runs them itself. Whatever a job changes goes out
through the announce path (`server.chat.announce`), like a web node's changes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

import httpx

from server.chat.adapters import Adapters
from server.rules.records import Committed
from server.store import escalation, queue
from server.store.lifecycle import Step
from server.worker import webhook
from server.worker.notify import Notifier
from server.worker.retention import purge

log = logging.getLogger(__name__)


class Jobs:
    def __init__(self, a: Adapters, client: httpx.AsyncClient | None = None) -> None:
        self.a = a
        self.client = client or httpx.AsyncClient(timeout=10.0, follow_redirects=False)
        self.notify = Notifier(a, self.client)
        self.jobs: list[tuple[str, Callable[[datetime], Awaitable[int]]]] = [
            ("queue.release", self.release_queue),
            # After the queue's release (released tickets join the pool this round);
            # offline assignees' tickets go back to the pool before the pool is dealt.
            ("assign.release", a.assigner.release),
            ("assign.pool", a.assigner.pool),
            ("sla.escalate", self.escalate),
            ("webhook.deliver", self.deliver),
            ("lifecycle.remind", self.remind),
            ("lifecycle.resolve_silent", self.resolve_silent),
            ("lifecycle.close_resolved", self.close_resolved),
            # After everything that queues mail this round, so it goes out this round.
            ("mail.replies", self.notify.queue_replies),
            ("oncall.page", self.notify.page_oncall),
            ("mail.deliver", self.notify.deliver_mail),
            ("sms.deliver", self.notify.deliver_sms),
            ("retention.purge", self.purge),
            ("attachments.sweep", self.sweep_attachments),
        ]

    async def aclose(self) -> None:
        await self.client.aclose()

    async def run_once(self, now: datetime) -> dict[str, int]:
        done: dict[str, int] = {}
        metrics = self.a.metrics
        for name, job in self.jobs:
            started = time.perf_counter()
            try:
                done[name] = await job(now)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("job.failed", extra={"job": name})
                metrics.job_failures.labels(name).inc()
                done[name] = -1
            metrics.job_seconds.labels(name).observe(time.perf_counter() - started)
        return done

    async def run_forever(self) -> None:
        interval = self.a.settings.jobs_interval.total_seconds()
        while True:
            done = await self.run_once(self.a.clock.now())
            if any(done.values()):
                log.info("jobs.ran", extra={k.replace(".", "_"): v for k, v in done.items()})
            await asyncio.sleep(interval)

    # ------------------------------------------------------------------ jobs
    async def release_queue(self, now: datetime) -> int:
        a = self.a
        released = await queue.release_due(a.engine, now)
        for ticket in await a.tickets.get_many(released.tickets):  # in release order
            await a.announce.ticket(ticket)
        by_ticket: dict[int, list[int]] = {}
        for ticket_id, seq in released.messages:
            by_ticket.setdefault(ticket_id, []).append(seq)
        shop_of = {t.id: t.shop_id for t in await a.tickets.get_many(by_ticket)}
        items: list[Committed] = []
        for ticket_id, seqs in by_ticket.items():
            if ticket_id not in shop_of:
                continue  # purged meanwhile
            shop = shop_of[ticket_id]
            wanted = set(seqs)
            for message in await a.messages.between(ticket_id, min(seqs) - 1, max(seqs)):
                if message.seq in wanted:
                    # Customers saw it when it was sent; the agents see it now.
                    items.append(Committed(shop, message, None, message.author.key(shop), audience="agents",
                                           released=True))
        await a.announce.committed(items)
        for ticket_id in by_ticket:
            if ticket_id not in released.tickets:
                a.announce.touch(ticket_id)  # its inbox row changed (released ones were announced whole)
        if released.tickets or released.messages:
            log.info("queue.released", extra={"tickets": len(released.tickets),
                                              "messages": len(released.messages)})
        return len(released.tickets) + len(released.messages)

    async def escalate(self, now: datetime) -> int:
        return await escalation.find_due(self.a.engine, now)

    async def deliver(self, now: datetime) -> int:
        settings = self.a.settings
        result = await webhook.deliver_due(self.a.engine, settings.webhook_url, settings.webhook_secret, now,
                                           self.client)
        if result.sent:
            self.a.metrics.webhooks.labels("sent").inc(result.sent)
        if result.failed:
            self.a.metrics.webhooks.labels("failed").inc(result.failed)
        return result.sent

    async def remind(self, now: datetime) -> int:
        return await self._announce(await self.a.lifecycle.remind(now))

    async def resolve_silent(self, now: datetime) -> int:
        return await self._announce(await self.a.lifecycle.resolve_silent(now))

    async def close_resolved(self, now: datetime) -> int:
        return await self._announce(await self.a.lifecycle.close_resolved(now))

    async def _announce(self, steps: list[Step]) -> int:
        """Tell whoever is connected: the ticket's new state and the system message."""
        a = self.a
        for step in steps:
            ticket = await a.tickets.get(step.ticket_id)
            await a.announce.ticket(ticket)
            await a.announce.committed([Committed(ticket.shop_id, step.message, None, "system")])
        return len(steps)

    async def purge(self, now: datetime) -> int:
        return await purge(self.a, await self.a.lifecycle.plan_purge(now))

    async def sweep_attachments(self, now: datetime) -> int:
        """Uploads never sent with a message, and files no row refers to any more."""
        store = self.a.attachments
        removed = await store.purge_unsent(now - self.a.settings.attachment_unsent_ttl)
        return removed + await store.sweep_orphans(now)
