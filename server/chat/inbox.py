"""Tickets as each reader sees them: the rows of an agent's inbox and a customer's list.

An agent's view of a ticket adds what support needs beside the record: whether the
shop's customer is connected now (Redis) and, in answers to an agent's own request,
the shop's fair-use record (the database). A customer's view is the protocol's
allow-list (`server.protocol.views.customer_ticket`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime

from redis.exceptions import RedisError

from server.presence import Presence
from server.principal import Principal
from server.protocol import views
from server.rules.conduct import WINDOW as CONDUCT_WINDOW
from server.rules.records import Ticket
from server.store.tickets import TicketStore

log = logging.getLogger(__name__)


async def customers_online(presence: Presence, shop_ids: Iterable[str], now: datetime) -> dict[str, bool]:
    """Which of these shops have a customer connected (unknown without Redis)."""
    try:
        return await presence.customers_online(shop_ids, now)
    except (RedisError, OSError):
        return {}


async def agent_views(presence: Presence, found: list[Ticket], wall_now: datetime) -> list[dict[str, object]]:
    """The inbox rows events carry (every agent gets the same; unread is per reader).
    Presence is judged on the real time (`wall_now`)."""
    online = await customers_online(presence, (t.shop_id for t in found), wall_now)
    return [views.agent_ticket(t, customer_online=online.get(t.shop_id)) for t in found]


async def views_for(principal: Principal, found: list[Ticket], unread: Mapping[int, int], *, presence: Presence,
                    tickets: TicketStore, now: datetime, wall_now: datetime) -> list[dict[str, object]]:
    """Tickets in an answer to this principal (agents also see who is connected, on
    the real time, and each shop's record, over the rules' window ending `now`)."""
    if not principal.is_agent:
        return [views.customer_ticket(views.agent_ticket(t), unread.get(t.id, 0)) for t in found]
    if not found:
        return []
    online = await customers_online(presence, (t.shop_id for t in found), wall_now)
    records = await tickets.shop_records((t.shop_id for t in found), now - CONDUCT_WINDOW)
    return [views.agent_ticket(t, unread.get(t.id, 0), customer_online=online.get(t.shop_id),
                               shop_record=records[t.shop_id].public()) for t in found]
