"""Searching tickets and messages by words, the use case: who may search where.

An agent searches every shop (optionally one, a status, a department); a customer
only its own shop — naming another is `forbidden` — and never what is for support
only (the store's `_customer_visible`). The answer shows each ticket as the asker may
see it (a customer's view is the allow-list of `server.protocol.views`), with the
matching message's seq and a snippet around the match (`server.rules.searchtext`).
"""

from __future__ import annotations

from server.chat.adapters import Adapters
from server.chat.connection import Connection
from server.chat.inbox import views_for
from server.errors import Forbidden, Unauthorized
from server.protocol import frames, views
from server.rules.searchtext import snippet
from server.rules.tickets import check_department


async def search(a: Adapters, conn: Connection, req: frames.Search, ref: object) -> None:
    principal = conn.session.principal
    if principal is None:  # requests other than hello come only after the welcome
        raise Unauthorized("say hello with a token first")
    shop = req.shop
    if not principal.is_agent:
        if shop is not None and shop != principal.shop:
            raise Forbidden("a customer searches only its own shop's tickets")
        shop = principal.shop
    check_department(req.department, a.rules.departments, everything=True)
    department = None if req.department == "*" else req.department
    found = await a.search.search(req.query, limit=req.limit, customer=not principal.is_agent, shop=shop,
                                  status=req.status, department=department)
    ticket_views = await views_for(principal, [f.ticket for f in found], conn.session.unread, presence=a.presence,
                                   tickets=a.tickets, now=a.clock.now(), wall_now=a.wall.now())
    conn.session.reply(views.search((view, f.seq, snippet(f.text, req.query))
                                    for view, f in zip(ticket_views, found, strict=True)), ref)
