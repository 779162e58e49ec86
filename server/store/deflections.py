"""Help-centre deflections in the database: a suggested article answered a customer's
question before a ticket was opened (seed 001's "virtual assistant"), one row per event.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from server.principal import Principal


class DeflectionStore:
    def __init__(self, engine: AsyncEngine, table: Table) -> None:
        self.engine = engine
        self.table = table

    async def record(self, article_id: str, principal: Principal, query: str | None, now: datetime) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(self.table.insert().values(
                article_id=article_id, shop_id=principal.shop, query=query, created_at=now))

    async def counts(self, since: datetime | None = None) -> dict[str, int]:
        """Deflections per article, optionally only those at or after `since`."""
        t = self.table
        query = select(t.c.article_id, func.count()).group_by(t.c.article_id)
        if since is not None:
            query = query.where(t.c.created_at >= since)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {str(r[0]): int(r[1]) for r in rows}
