"""What search costs the message hot path, on PostgreSQL: the group-commit writer's
insert as migrated (no search index on `messages`: the indexer stores the words
later, off the hot path) against the design it replaced (a GIN expression index on
`messages`, fastupdate on and off), and what the indexer then spends per message.

    .venv/bin/python bench/search_writes.py            # ~1-2 min
    .venv/bin/python bench/search_writes.py --smoke    # a few seconds

A fresh database + `python -m server migrate`, `--tickets` tickets; then rounds of
`--batches` transactions of `--batch` messages each, inserted the way the writer does
(one INSERT … SELECT FROM unnest(…) per transaction, bodies of realistic Polish
support text), alternating: as migrated (no index on `messages`), with the GIN
expression index `to_tsvector('simple', pomoc_search_text(body))` (fastupdate on),
and with it fastupdate off. Then the indexer's work for everything inserted, in its
batches of 2000 (folded here by the SQL function, an upper bound: the server's
indexer folds in Python and hands PostgreSQL the words). Prints the time per message (median of the rounds) per variant,
the difference, and each variant's transaction times (p50, p99, max: with fastupdate
the insert that fills the pending list merges it). Timing only; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Env, add_service_args, asyncpg_dsn, log, use_uvloop  # noqa: E402
from search import vocabulary  # noqa: E402

INSERT = """
INSERT INTO messages (ticket_id, seq, author_kind, author_id, author_name, body, client_id, created_at, queued_until)
SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                     $8::timestamptz[], $9::timestamptz[])
"""
INDEXER = """
INSERT INTO search_documents (message_id, words)
SELECT id, to_tsvector('simple'::regconfig, pomoc_search_text(body)) FROM messages
WHERE id > $1 AND author_kind <> 'system' ORDER BY id LIMIT 2000
RETURNING message_id
"""
CREATE = ("CREATE INDEX ix_messages_search ON messages USING gin "
          "(to_tsvector('simple'::regconfig, pomoc_search_text(body))) {with_} WHERE author_kind <> 'system'")


async def main(args: argparse.Namespace) -> int:
    import asyncpg

    if args.smoke:
        args.rounds, args.batches, args.tickets = 2, 20, 20
    env = Env(args, "searchwrites")
    rng = random.Random(args.seed)
    bodies = vocabulary(rng, 2000)
    per_variant: dict[str, list[float]] = {"GIN on messages (fastupdate on)": [], "as migrated": [],
                                           "GIN on messages (fastupdate off)": []}
    # Each transaction's time: fastupdate's pending list is merged by the insert that fills it.
    commits: dict[str, list[float]] = {name: [] for name in per_variant}
    indexer_s = float("nan")
    try:
        await env.create()
        conn = await asyncpg.connect(asyncpg_dsn(env.db_url))
        try:
            now = datetime.now(UTC)
            await conn.execute("INSERT INTO shops VALUES ('s', 'Sklep', 'standard', $1, $1)", now)
            await conn.executemany(
                "INSERT INTO tickets (id, shop_id, created_by, title, status, severity, context, last_seq, "
                "created_at, updated_at) VALUES ($1, 's', 'u', 'Płatność', 'open', 'question', '{}', 0, $2, $2)",
                [(t, now) for t in range(1, args.tickets + 1)])
            seqs = dict.fromkeys(range(1, args.tickets + 1), 0)
            counter = 0

            async def one_round(name: str) -> None:
                nonlocal counter
                t0 = time.perf_counter()
                for _ in range(args.batches):
                    cols: list[list[object]] = [[] for _ in range(9)]
                    for _ in range(args.batch):
                        t = rng.randint(1, args.tickets)
                        seqs[t] += 1
                        counter += 1
                        row = (t, seqs[t], "customer", "u", "Ola", rng.choice(bodies), f"c{counter}", now, None)
                        for i, v in enumerate(row):
                            cols[i].append(v)
                    t1 = time.perf_counter()
                    async with conn.transaction():
                        await conn.execute(INSERT, *cols)
                    commits[name].append(time.perf_counter() - t1)
                per_variant[name].append((time.perf_counter() - t0) / (args.batches * args.batch))

            for r in range(args.rounds):
                log(f"[searchwrites] round {r + 1}/{args.rounds}")
                for name in per_variant:
                    await conn.execute("DROP INDEX IF EXISTS ix_messages_search")
                    if name != "as migrated":
                        off = "fastupdate off" in name
                        await conn.execute(CREATE.format(with_="WITH (fastupdate = off)" if off else ""))
                    await one_round(name)
            await conn.execute("DROP INDEX IF EXISTS ix_messages_search")
            await conn.execute("TRUNCATE search_documents")
            total = await conn.fetchval("SELECT count(*) FROM messages")
            t0 = time.perf_counter()
            after = 0
            while True:
                async with conn.transaction():
                    done = await conn.fetch(INDEXER, after)
                if not done:
                    break
                after = max(r[0] for r in done)
            indexer_s = (time.perf_counter() - t0) / total
        finally:
            await conn.close()
    finally:
        await env.cleanup()
    base = statistics.median(per_variant["as migrated"])
    print(f"search_writes: {args.rounds} rounds x {args.batches} transactions x {args.batch} messages per variant "
          f"(the writer's INSERT … unnest); median per message")
    for name, values in per_variant.items():
        med = statistics.median(values)
        c = sorted(commits[name])
        print(f"  {name:<34} {med * 1e6:8.1f} µs/message  ({(med - base) * 1e6:+7.1f} µs, {med / base:5.2f}x)   "
              f"transaction p50 {c[len(c) // 2] * 1e3:6.2f} ms  p99 {c[int(len(c) * 0.99)] * 1e3:7.2f} ms  "
              f"max {c[-1] * 1e3:7.2f} ms")
    print(f"  the indexer, afterwards (batches of 2000, SQL fold): {indexer_s * 1e6:.1f} µs/message")
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batches", type=int, default=200, help="transactions per round and variant")
    p.add_argument("--batch", type=int, default=20, help="messages per transaction (a busy group commit)")
    p.add_argument("--tickets", type=int, default=200)
    p.add_argument("--smoke", action="store_true")
    add_service_args(p)
    return p.parse_args(argv)


if __name__ == "__main__":
    use_uvloop()
    sys.exit(asyncio.run(main(parse())))
