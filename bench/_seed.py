"""Bulk data for the bench tools: shops, customers, tickets, messages, read cursors,
written with COPY (asyncpg `copy_records_to_table`) into the schema that
`python -m server migrate` created.

Shape: shop k has `tickets_per_shop` tickets and one customer user `u<k>`; every
ticket has `per_ticket` messages alternating customer / agent (seq 1..n, gapless),
`tickets.last_seq` = n, and the customer's read cursor at n - `unread` (so a welcome
shows a few unread messages, as in real life). A fraction of the tickets is closed.

The columns are listed explicitly (read server/models.py); if the schema grows a
NOT NULL column without a server default, COPY fails loudly with its name.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

BODIES = [
    "Hi, my order #48213 has not arrived yet, can you check the courier?",
    "Thanks, I will look into it right away and come back to you.",
    "The payment went through twice, please refund one of them.",
    "Could you send me the invoice for the last order again?",
    "The product page shows the wrong price after the discount.",
    "We have passed it to the warehouse; you should get tracking today.",
    "Dzień dobry, nie mogę zalogować się do panelu sklepu od rana.",
    "Proszę spróbować jeszcze raz, właśnie zresetowaliśmy sesję.",
]

TICKET_COLS = ["id", "shop_id", "created_by", "client_id", "title", "status", "severity", "department", "assignee",
               "context", "last_seq", "created_at", "updated_at", "last_message_at", "sla_due_at", "queued_until",
               "resolved_at", "closed_at", "first_response_at", "sla_warning_at", "waiting_since", "reminders_sent"]
MESSAGE_COLS = ["id", "ticket_id", "seq", "author_kind", "author_id", "author_name", "body", "client_id",
                "created_at", "queued_until"]


@dataclass(frozen=True)
class Shape:
    tickets: int
    per_ticket: int
    tickets_per_shop: int = 4
    closed_fraction: float = 0.8
    unread: int = 2
    first_ticket: int = 1  # ids are assigned here, so ticket i belongs to shop (i-1)//tickets_per_shop

    def shop_of(self, ticket_id: int) -> int:
        return (ticket_id - 1) // self.tickets_per_shop

    @property
    def messages(self) -> int:
        return self.tickets * self.per_ticket


def shop_id(k: int) -> str:
    return f"s{k}"


def user_id(k: int) -> str:
    return f"u{k}"


def message_id(ticket_id: int, seq: int, per_ticket: int) -> int:
    return (ticket_id - 1) * per_ticket + seq


class Seeder:
    def __init__(self, dsn: str, base: datetime, seed: int = 1, *, bodies: list[str] | None = None,
                 titles: list[tuple[str, str | None]] | None = None) -> None:
        self.dsn = dsn
        self.base = base.astimezone(UTC)
        self.rng = random.Random(seed)
        # Message bodies (cycled), and ticket (title, department) pairs (cycled): the
        # defaults are a few fixed texts; the search bench brings a realistic vocabulary.
        self.bodies = bodies or BODIES
        self.titles = titles

    async def seed(self, shape: Shape, *, bulk: bool = False, log: Any = print) -> dict[str, float]:
        """Insert `shape.tickets` tickets starting at `shape.first_ticket`. With `bulk`
        the messages table's indexes and constraints are dropped during the load and
        rebuilt afterwards (much faster for millions of rows)."""
        import asyncpg

        t0 = time.perf_counter()
        conn = await asyncpg.connect(self.dsn)
        stats: dict[str, float] = {}
        try:
            await conn.execute("SET synchronous_commit = off")
            await conn.execute("SET maintenance_work_mem = '1GB'")
            saved: list[str] = []
            if bulk:
                saved = await _drop_indexes(conn, "messages")
            await self._shops(conn, shape)
            await self._tickets(conn, shape)
            t1 = time.perf_counter()
            await self._messages(conn, shape, log)
            stats["copy_messages_s"] = time.perf_counter() - t1
            await self._cursors(conn, shape)
            if saved:
                t2 = time.perf_counter()
                for ddl in saved:
                    await conn.execute(ddl)
                stats["rebuild_indexes_s"] = time.perf_counter() - t2
            for table in ("tickets", "messages"):
                await conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
            t3 = time.perf_counter()
            await conn.execute("VACUUM ANALYZE shops, customers, tickets, messages, read_cursors")
            stats["vacuum_analyze_s"] = time.perf_counter() - t3
            if bulk:
                # Write the load's dirty pages now: the measurement that follows should not
                # share the disk with the checkpoint a multi-gigabyte COPY leaves behind.
                t4 = time.perf_counter()
                await conn.execute("CHECKPOINT")
                stats["checkpoint_s"] = time.perf_counter() - t4
        finally:
            await conn.close()
        stats["total_s"] = time.perf_counter() - t0
        return stats

    def _t(self, ticket_id: int) -> datetime:
        return self.base - timedelta(minutes=ticket_id)

    async def _shops(self, conn: Any, shape: Shape) -> None:
        first = shape.shop_of(shape.first_ticket)
        last = shape.shop_of(shape.first_ticket + shape.tickets - 1)
        existing = await conn.fetchval("SELECT count(*) FROM shops WHERE id = $1", shop_id(first))
        start = first + (1 if existing else 0)
        at = self.base - timedelta(days=400)
        shops = [(shop_id(k), f"Shop {k}", "standard", at, at) for k in range(start, last + 1)]
        customers = [(shop_id(k), user_id(k), f"Customer {k}", None, at, at) for k in range(start, last + 1)]
        await conn.copy_records_to_table("shops", records=shops, columns=["id", "name", "plan", "created_at",
                                                                          "updated_at"])
        await conn.copy_records_to_table("customers", records=customers,
                                         columns=["shop_id", "user_id", "name", "email", "first_seen_at",
                                                  "last_seen_at"])

    async def _tickets(self, conn: Any, shape: Shape) -> None:
        rows = []
        ctx = json.dumps({"browser": "Firefox", "page_url": "https://shop.example/admin/orders"})
        n = shape.per_ticket
        for tid in range(shape.first_ticket, shape.first_ticket + shape.tickets):
            k = shape.shop_of(tid)
            created = self._t(tid) - timedelta(seconds=30 * n)
            last = self._t(tid)
            closed = self.rng.random() < shape.closed_fraction
            title, department = (self.titles[tid % len(self.titles)] if self.titles
                                 else (f"Ticket {tid}: order problem", None))
            rows.append((
                tid, shop_id(k), user_id(k), f"t{tid}", title,
                "closed" if closed else "open", "question", department, None, ctx, n, created, last, last,
                created + timedelta(hours=8), None, last if closed else None, last if closed else None,
                created + timedelta(minutes=5) if n > 1 else None, None, None, 0,
            ))
        await conn.copy_records_to_table("tickets", records=rows, columns=TICKET_COLS)

    async def _messages(self, conn: Any, shape: Shape, log: Any) -> None:
        n = shape.per_ticket
        chunk_tickets = max(1, 200_000 // max(1, n))
        offsets = [timedelta(seconds=30 * (n - s)) for s in range(n + 1)]
        bodies = self.bodies
        nb = len(bodies)
        done = 0
        t0 = time.perf_counter()
        last_log = t0
        first, end = shape.first_ticket, shape.first_ticket + shape.tickets
        for start in range(first, end, chunk_tickets):
            stop = min(end, start + chunk_tickets)
            await conn.copy_records_to_table("messages", records=_message_rows(start, stop, n, offsets, bodies, nb,
                                                                               self._t, shape),
                                             columns=MESSAGE_COLS)
            done += (stop - start) * n
            now = time.perf_counter()
            if now - last_log > 10:
                last_log = now
                log(f"[seed] {done:,} / {shape.messages:,} messages ({done / (now - t0):,.0f} rows/s)")

    async def _cursors(self, conn: Any, shape: Shape) -> None:
        n = shape.per_ticket
        seq = max(0, n - shape.unread)
        rows = []
        for tid in range(shape.first_ticket, shape.first_ticket + shape.tickets):
            k = shape.shop_of(tid)
            rows.append((tid, f"c:{shop_id(k)}:{user_id(k)}", seq, self._t(tid)))
        await conn.copy_records_to_table("read_cursors", records=rows,
                                         columns=["ticket_id", "reader", "seq", "updated_at"])


def _message_rows(start: int, stop: int, n: int, offsets: list[timedelta], bodies: list[str], nb: int,
                  when: Any, shape: Shape) -> Iterator[tuple[Any, ...]]:
    for tid in range(start, stop):
        k = shape.shop_of(tid)
        user, shop_name = user_id(k), f"Customer {k}"
        last = when(tid)
        base_id = (tid - 1) * n
        for seq in range(1, n + 1):
            if seq % 2:
                kind, author, name = "customer", user, shop_name
            else:
                kind, author, name = "agent", "a1", "Anna"
            yield (base_id + seq, tid, seq, kind, author, name, bodies[(tid + seq) % nb], f"m{base_id + seq}",
                   last - offsets[seq], None)


async def _drop_indexes(conn: Any, table: str) -> list[str]:
    """Drop the table's unique and foreign-key constraints and plain indexes; returns
    the DDL that recreates them exactly (unique first, then FKs, then indexes). The
    primary key stays: other tables' foreign keys depend on it, and ids are loaded in
    ascending order, which a btree appends cheaply."""
    cons = await conn.fetch(
        "SELECT conname, contype::text AS contype, pg_get_constraintdef(oid) AS def FROM pg_constraint "
        "WHERE conrelid = $1::regclass AND contype IN ('u', 'f')", table)
    idx = await conn.fetch(
        "SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def FROM pg_index i "
        "WHERE i.indrelid = $1::regclass AND NOT EXISTS "
        "(SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)", table)
    order = {"u": 1, "f": 2}
    ddl = [f'ALTER TABLE {table} ADD CONSTRAINT "{c["conname"]}" {c["def"]}'
           for c in sorted(cons, key=lambda c: order[c["contype"]])]
    ddl += [i["def"] for i in idx]
    for c in sorted(cons, key=lambda c: -order[c["contype"]]):
        await conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{c["conname"]}"')
    for i in idx:
        await conn.execute(f'DROP INDEX {i["name"]}')
    return ddl
