"""Carrying out a purge everywhere: Redis state, files, then rows.

A plan (`server.store.lifecycle.PurgePlan`: closed tickets past retention, or every
ticket of a shop being erased) is carried out a bounded chunk at a time, Redis state
first, then files, then rows — if anything fails, the rows are still there and a
rerun finishes the job.
"""

from __future__ import annotations

import logging

from server.chat.adapters import Adapters
from server.store.lifecycle import PurgePlan

log = logging.getLogger(__name__)


async def purge(a: Adapters, plan: PurgePlan) -> int:
    deleted = files = 0
    lifecycle = a.lifecycle
    for chunk in plan.chunks(lifecycle.batch):
        await a.readers.forget_tickets(await lifecycle.readers_by_ticket(chunk))
        files += await a.attachments.purge_tickets(chunk)
        deleted += await lifecycle.purge_tickets(chunk, plan.sizes)
    if plan.tickets:
        log.info("retention.purged", extra={"tickets": len(plan.tickets), "messages": deleted, "files": files})
    return deleted
