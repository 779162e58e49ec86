"""The background jobs, run once as of an instant or forever on a clock.

Each job is safe to run on several workers at once (every state change is an
UPDATE that only one of them wins) and catches its own failures, so one broken
job never stops the others. `python -m server jobs --once --at ISO` runs them all
once as of that instant; `python -m server worker` runs them every few seconds;
in embedded mode the web process runs them itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING

import httpx

from server import escalation, queue, webhook
from server.lifecycle import Lifecycle, publish_steps, purge

if TYPE_CHECKING:
    from server.node import Node

log = logging.getLogger(__name__)


class Jobs:
    def __init__(self, node: Node, client: httpx.AsyncClient | None = None) -> None:
        self.node = node
        self.client = client or httpx.AsyncClient(timeout=10.0, follow_redirects=False)
        self.jobs: list[tuple[str, Callable[[datetime], Awaitable[int]]]] = [
            ("queue.release", self.release_queue),
            ("sla.escalate", self.escalate),
            ("webhook.deliver", self.deliver),
            ("lifecycle.remind", self.remind),
            ("lifecycle.resolve_silent", self.resolve_silent),
            ("lifecycle.close_resolved", self.close_resolved),
            ("retention.purge", self.purge),
            ("attachments.sweep", self.sweep_attachments),
        ]
        self.lifecycle = Lifecycle(node.store.engine, node.settings.lifecycle(), node.settings.purge_batch)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def run_once(self, now: datetime) -> dict[str, int]:
        done: dict[str, int] = {}
        for name, job in self.jobs:
            try:
                done[name] = await job(now)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("job.failed", extra={"job": name})
                done[name] = -1
        return done

    async def run_forever(self) -> None:
        interval = self.node.settings.jobs_interval.total_seconds()
        while True:
            done = await self.run_once(self.node.now())
            if any(done.values()):
                log.info("jobs.ran", extra={k.replace(".", "_"): v for k, v in done.items()})
            await asyncio.sleep(interval)

    # ------------------------------------------------------------------ jobs
    async def release_queue(self, now: datetime) -> int:
        node = self.node
        released = await queue.release_due(node.store.engine, now)
        for ticket in await node.store.get_many(released.tickets):  # in release order
            await node.publish_ticket(ticket)
        by_ticket: dict[int, list[int]] = {}
        for ticket_id, seq in released.messages:
            by_ticket.setdefault(ticket_id, []).append(seq)
        shop_of = {t.id: t.shop_id for t in await node.store.get_many(by_ticket)}
        for ticket_id, seqs in by_ticket.items():
            if ticket_id not in shop_of:
                continue  # purged meanwhile
            for message in await node.store.between(ticket_id, min(seqs) - 1, max(seqs)):
                if message.seq in seqs:
                    await node.publish_release(shop_of[ticket_id], message)
            if ticket_id not in released.tickets:
                node.inbox_touch(ticket_id)
        if released.tickets or released.messages:
            log.info("queue.released", extra={"tickets": len(released.tickets),
                                              "messages": len(released.messages)})
        return len(released.tickets) + len(released.messages)

    async def escalate(self, now: datetime) -> int:
        return await escalation.find_due(self.node.store.engine, now)

    async def deliver(self, now: datetime) -> int:
        settings = self.node.settings
        result = await webhook.deliver_due(self.node.store.engine, settings.webhook_url, settings.webhook_secret,
                                           now, self.client)
        return result.sent

    async def remind(self, now: datetime) -> int:
        steps = await self.lifecycle.remind(now)
        await publish_steps(self.node, steps)
        return len(steps)

    async def resolve_silent(self, now: datetime) -> int:
        steps = await self.lifecycle.resolve_silent(now)
        await publish_steps(self.node, steps)
        return len(steps)

    async def close_resolved(self, now: datetime) -> int:
        steps = await self.lifecycle.close_resolved(now)
        await publish_steps(self.node, steps)
        return len(steps)

    async def purge(self, now: datetime) -> int:
        return await purge(self.node, self.lifecycle, await self.lifecycle.plan_purge(now))

    async def sweep_attachments(self, now: datetime) -> int:
        """Uploads never sent with a message, and files no row refers to any more."""
        store = self.node.attachments
        removed = await store.purge_unsent(now - self.node.settings.attachment_unsent_ttl)
        return removed + await store.sweep_orphans(now)
