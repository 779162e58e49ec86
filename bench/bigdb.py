"""Costs that must not grow with data: `history` pages and `hello` -> `welcome` on a
small database vs the same database filled with millions of messages.

    .venv/bin/python bench/bigdb.py                       # 20,000 messages (CI-sized)
    .venv/bin/python bench/bigdb.py --messages 10000000   # the real check (~3-6 min load)
    .venv/bin/python bench/bigdb.py --smoke               # a few seconds

Steps: fresh PostgreSQL database + `python -m server migrate`; seed a small set of
tickets (`--baseline-tickets`, same messages per ticket as the big set); start a
server; measure; stop it; COPY the rest (to `--messages` in `--tickets` tickets, the
messages table's indexes dropped during the load and rebuilt, then VACUUM ANALYZE);
start a fresh server; measure the same way on random tickets/shops of the whole set;
print both and the ratio. Drops the database at the end unless --keep.

Measured (sequential requests, one at a time, so each number is a latency):
- history: an agent asks `history` for a random ticket, `before_seq` random, limit 50;
- welcome (customer, first): a new user of a random shop (4 tickets, 2 unread each)
  sends `hello` on a fresh connection -> `welcome` (the WebSocket handshake is
  excluded): the user is recorded and its unread state built from the database;
- welcome (customer, again): the same user reconnects (its state is in Redis);
- welcome (agent, feed): a new agent's `hello` with the inbox feed -> `welcome` (the
  first page of the inbox, most urgent first).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    Client,
    Env,
    add_service_args,
    asyncpg_dsn,
    fmt_ms,
    log,
    mint,  # noqa: E402  (kept apart: the token helper)
    summary_ms,
    use_uvloop,
)
from _seed import Seeder, Shape, shop_id, user_id  # noqa: E402


async def measure(env: Env, url: str, shape_all: Shape, n_tickets: int, args: argparse.Namespace,
                  rng: random.Random) -> dict[str, dict[str, float]]:
    """Latencies against the server at `url` over tickets 1..n_tickets."""
    agent = Client(url)
    await agent.connect(mint(env.secret, "agent", "bench-history", name="History"), feed=False)
    per = shape_all.per_ticket
    out: dict[str, dict[str, float]] = {}
    try:
        async def one_history() -> float:
            tid = rng.randint(1, n_tickets)
            before = rng.randint(2, per + 1)
            t = time.perf_counter()
            reply = await agent.request({"type": "history", "ticket": tid, "before_seq": before, "limit": 50})
            dt = time.perf_counter() - t
            if reply.get("type") != "history" or not reply.get("messages"):
                raise RuntimeError(f"unexpected history reply: {str(reply)[:200]}")
            return dt

        for _ in range(args.warmup):
            await one_history()
        out["history"] = summary_ms([await one_history() for _ in range(args.history)])
    finally:
        await agent.close()

    shops = max(1, n_tickets // shape_all.tickets_per_shop)

    async def one_welcome(token: str, feed: bool | None, role: str) -> float:
        c = Client(url)
        try:
            sent: list[float] = []
            welcome = await c.connect(token, feed=feed, on_connected=lambda: sent.append(time.perf_counter()))
            dt = (c.welcome_at or time.perf_counter()) - sent[0]
            if role == "customer" and not welcome.get("tickets"):
                raise RuntimeError("customer welcome lists no tickets: seeding and server disagree")
            return dt
        finally:
            await c.close()

    def customer_token(k: int, sub: str) -> str:
        return mint(env.secret, "customer", sub, shop=shop_id(k), name=f"Customer {k}")

    for _ in range(min(args.warmup, 10)):
        await one_welcome(customer_token(rng.randrange(shops), f"warmup-{rng.randrange(10**9)}"), None, "customer")
    # Like with like in both phases: a shop's user seen for the first time (recorded,
    # unread state built from the database), then the same user again (a reconnect).
    first, again = [], []
    for _ in range(args.welcomes):
        k = rng.randrange(shops)
        token = customer_token(k, f"{user_id(k)}-{rng.randrange(10**9)}")
        first.append(await one_welcome(token, None, "customer"))
        again.append(await one_welcome(token, None, "customer"))
    out["welcome_customer"] = summary_ms(first)
    out["welcome_customer_again"] = summary_ms(again)
    out["welcome_agent"] = summary_ms([
        await one_welcome(mint(env.secret, "agent", f"bench-agent-{rng.randrange(10**9)}", name="Agent"), True,
                          "agent") for _ in range(args.agent_welcomes)])
    return out


async def main(args: argparse.Namespace) -> int:
    if args.smoke:
        args.messages, args.tickets, args.baseline_tickets = 4000, 40, 8
        args.history, args.welcomes, args.agent_welcomes, args.warmup = 40, 20, 5, 5
    tickets = args.tickets or max(1, args.messages // 100)
    per = max(1, args.messages // tickets)
    base_n = args.baseline_tickets or max(1, min(200, tickets // 10))
    base_n -= base_n % 4 or 0
    base_n = max(4, min(base_n, tickets))
    rng = random.Random(args.seed)
    env = Env(args, "bigdb")
    log(f"[bigdb] database {env.dbname}; {tickets:,} tickets x {per} messages = {tickets * per:,} messages; "
        f"baseline {base_n} tickets ({base_n * per:,} messages); clock {env.clock}")
    results: dict[str, dict[str, dict[str, float]]] = {}
    load: dict[str, float] = {}
    rc = 0
    try:
        await env.create()
        dsn = asyncpg_dsn(env.db_url)
        seeder = Seeder(dsn, datetime.fromisoformat(env.clock), seed=args.seed)
        shape_all = Shape(tickets=tickets, per_ticket=per)
        await seeder.seed(Shape(tickets=base_n, per_ticket=per), log=log)

        server = env.server("small").start()
        log(f"[bigdb] measuring on the small database ({base_n * per:,} messages)")
        results["small"] = await measure(env, server.url, shape_all, base_n, args, rng)
        server.stop()

        if tickets > base_n:
            log(f"[bigdb] loading {(tickets - base_n) * per:,} more messages with COPY ...")
            t = time.perf_counter()
            load = await seeder.seed(Shape(tickets=tickets - base_n, per_ticket=per, first_ticket=base_n + 1),
                                     bulk=True, log=log)
            load["rows_per_s"] = (tickets - base_n) * per / load["total_s"]
            log(f"[bigdb] loaded in {time.perf_counter() - t:.1f} s: " +
                ", ".join(f"{k} {v:,.1f}" for k, v in load.items()))
        server = env.server("big").start()
        log(f"[bigdb] measuring on the big database ({tickets * per:,} messages)")
        results["big"] = await measure(env, server.url, shape_all, tickets, args, rng)
        server.stop()
        problems = [p for s in env.servers for p in s.log_problems()]
    finally:
        await env.cleanup()

    print(f"bigdb: {tickets * per:,} messages in {tickets:,} tickets ({per}/ticket) vs baseline "
          f"{base_n * per:,} messages in {base_n} tickets; PostgreSQL, one server process")
    if load:
        print(f"  load: {load.get('total_s', 0):.1f} s total ({load.get('rows_per_s', 0):,.0f} messages/s incl. "
              f"index rebuild {load.get('rebuild_indexes_s', 0):.1f} s, vacuum analyze "
              f"{load.get('vacuum_analyze_s', 0):.1f} s)")
    print(f"  {'what':<22} {'small p50':>10} {'small p99':>10} {'big p50':>10} {'big p99':>10} "
          f"{'ratio p50':>9} {'ratio p99':>9}")
    verdict = True
    for key, label in (("history", "history page (50)"), ("welcome_customer", "welcome cust. first"),
                       ("welcome_customer_again", "welcome cust. again"), ("welcome_agent", "welcome agent (inbox)")):
        s, b = results["small"][key], results["big"][key]
        r50, r99 = b["p50"] / s["p50"], b["p99"] / s["p99"]
        verdict = verdict and r50 <= 1.5 and r99 <= 1.5
        print(f"  {label:<22} {s['p50']:8.2f}ms {s['p99']:8.2f}ms {b['p50']:8.2f}ms {b['p99']:8.2f}ms "
              f"{r50:8.2f}x {r99:8.2f}x")
    for phase in ("small", "big"):
        for key, s in results[phase].items():
            print(f"  {phase:<5} {key:<22} {fmt_ms(s)}")
    print(f"  target: history and every welcome within 1.5x (p50 and p99) on big vs small: "
          f"{'MET' if verdict else 'MISSED'}")
    if problems:
        print(f"  server log warnings/errors: {len(problems)}; first: {problems[0]}")
        if any('"level": "error"' in p or "Traceback" in p for p in problems):
            rc = 1
    return rc


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=20_000, help="messages in the big database (default %(default)s)")
    p.add_argument("--tickets", type=int, default=0, help="tickets in the big database (default messages/100)")
    p.add_argument("--baseline-tickets", type=int, default=0,
                   help="tickets in the small database (default min(200, tickets/10))")
    p.add_argument("--history", type=int, default=500, help="history requests per phase (default %(default)s)")
    p.add_argument("--welcomes", type=int, default=200, help="customer hellos per phase (default %(default)s)")
    p.add_argument("--agent-welcomes", type=int, default=30, help="agent hellos per phase (default %(default)s)")
    p.add_argument("--warmup", type=int, default=30, help="unmeasured requests first (default %(default)s)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    add_service_args(p)
    return p.parse_args(argv)


if __name__ == "__main__":
    use_uvloop()
    sys.exit(asyncio.run(main(parse())))
