"""Reconnect storm: node A dies with N customers on it; they all reconnect to node B
with `hello.resume` while agents on B write to every ticket.

    .venv/bin/python bench/storm.py                 # 2000 customers
    .venv/bin/python bench/storm.py --customers 500
    .venv/bin/python bench/storm.py --smoke         # 50 customers, a few seconds

Steps: fresh PostgreSQL database + `python -m server migrate`; N shops, each with one
customer and one ticket (seeded with COPY: seq 1..2, read up to 2); servers A and B
(subprocesses, real Redis under a private prefix). All N customers connect to A
(`hello` -> `welcome`, each remembers its ticket's `last_seq`), `--agents` agents
connect to B (`feed: false`). Then, at t0:
  - A gets SIGKILL;
  - the agents send one message to every ticket (pipelined, `--agent-window` in
    flight per agent) and wait for the acks;
  - every customer notices its socket closing and reconnects at once to B with
    `resume: {ticket: last_seq}` (at most `--concurrency` handshakes in flight from
    this one client process, like a fleet whose clients all retry immediately;
    `--jitter S` spreads the first retry uniformly over S seconds instead).
A customer is done when it has its `welcome` AND the agent's message (seq last_seq+1),
whether that came in the resume replay or live afterwards. Printed: per-customer time
from t0 to done (p50/p95/p99/max), time to welcome, total, failures, and whether all
were done within --target seconds (5). Client CPU is printed too: this process shares
the 2 cores with B, Redis and PostgreSQL, so a busy client slows the storm.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    Client,
    Env,
    add_service_args,
    asyncpg_dsn,
    cpu_seconds,
    fmt_ms,
    gather_limited,
    log,
    mint,
    proc_cpu_seconds,
    raise_fd_limit,
    summary_ms,
    use_uvloop,
)
from _seed import Seeder, Shape, shop_id, user_id  # noqa: E402


@dataclass
class Customer:
    k: int
    token: str
    ticket: int = 0
    last_seq: int = 0
    client: Client | None = None
    lost_at: float | None = None       # socket to A closed (seen by the client)
    welcome_at: float | None = None    # welcome from B
    message_at: float | None = None    # the agent's message from B
    attempts: int = 0
    error: str | None = None

    @property
    def done_at(self) -> float | None:
        if self.welcome_at is None or self.message_at is None:
            return None
        return max(self.welcome_at, self.message_at)


async def main(args: argparse.Namespace) -> int:
    if args.smoke:
        args.customers, args.agents, args.timeout = 50, 2, 20.0
    fd = raise_fd_limit()
    if fd < args.customers * 2 + 100:
        log(f"[storm] warning: fd limit {fd} is low for {args.customers} customers")
    rng = random.Random(args.seed)
    env = Env(args, "storm")
    n = args.customers
    log(f"[storm] database {env.dbname}; {n} customers, {args.agents} agents; clock {env.clock}")
    customers = [Customer(k, mint(env.secret, "customer", user_id(k), shop=shop_id(k), name=f"Customer {k}"))
                 for k in range(n)]
    rc = 0
    result: dict[str, Any] = {}
    try:
        await env.create()
        seeder = Seeder(asyncpg_dsn(env.db_url), datetime.fromisoformat(env.clock), seed=args.seed)
        await seeder.seed(Shape(tickets=n, per_ticket=2, tickets_per_shop=1, closed_fraction=0.0, unread=0),
                          log=log)
        a = env.server("A").start()
        b = env.server("B").start()

        # ---- customers on A
        t = time.perf_counter()
        a_cpu0 = proc_cpu_seconds(a.pid)

        async def on_a(c: Customer) -> None:
            c.client = Client(a.url)
            welcome = await c.client.connect(c.token)
            tickets = welcome.get("tickets") or []
            if len(tickets) != 1:
                raise RuntimeError(f"customer {c.k}: welcome lists {len(tickets)} tickets, expected 1")
            c.ticket, c.last_seq = int(tickets[0]["id"]), int(tickets[0]["last_seq"])

        errors = [e for e in await gather_limited(64, (on_a(c) for c in customers)) if e is not None]
        if errors:
            raise RuntimeError(f"{len(errors)} customers could not connect to A; first: {errors[0]!r}")
        hello_cpu_us = (proc_cpu_seconds(a.pid) - a_cpu0) / n * 1e6
        log(f"[storm] {n} customers on A in {time.perf_counter() - t:.1f} s "
            f"({n / (time.perf_counter() - t):.0f} hello/s, server A CPU {hello_cpu_us:.0f} µs per hello)")

        # ---- agents on B
        agents = [Client(b.url) for _ in range(args.agents)]
        for i, ag in enumerate(agents):
            await ag.connect(mint(env.secret, "agent", f"storm-agent-{i}", name=f"Agent {i}"), feed=False)
        by_ticket = {c.ticket: c for c in customers}
        await asyncio.sleep(1.0)  # let A and B settle (subscriptions, presence) before the kill

        # ---- the storm
        sem = asyncio.Semaphore(args.concurrency)
        deadline_s = args.timeout

        def frame_handler(c: Customer) -> Any:
            def on_frame(frame: dict[str, Any], t: float) -> None:
                if (frame.get("type") == "message" and frame.get("ticket") == c.ticket
                        and frame.get("seq", 0) > c.last_seq and (frame.get("author") or {}).get("kind") == "agent"
                        and c.message_at is None):
                    c.message_at = t
            return on_frame

        async def reconnect(c: Customer, t0: float) -> None:
            assert c.client is not None
            await c.client.closed.wait()
            c.lost_at = time.perf_counter()
            if args.jitter:
                await asyncio.sleep(rng.uniform(0, args.jitter))
            while time.perf_counter() - t0 < deadline_s:
                c.attempts += 1
                client = Client(b.url, on_frame=frame_handler(c))
                try:
                    async with sem:
                        await client.connect(c.token, resume={c.ticket: c.last_seq},
                                             timeout=max(1.0, deadline_s - (time.perf_counter() - t0)))
                    c.welcome_at = client.welcome_at
                    c.client = client
                    while c.message_at is None and time.perf_counter() - t0 < deadline_s:
                        # bounded wait for the live message (the replay may already have carried it)
                        try:
                            await asyncio.wait_for(client.closed.wait(), 0.05)
                            break
                        except TimeoutError:
                            pass
                    if c.message_at is not None:
                        return
                    if client.closed.is_set():
                        c.welcome_at = None
                        continue
                except Exception as exc:  # noqa: BLE001  (refused, 1013, timeout: retry like a client would)
                    c.error = repr(exc)[:200]
                    await client.close()
                    await asyncio.sleep(min(1.0, 0.05 * 2 ** min(c.attempts, 5)) * rng.random())
            if c.error is None:
                c.error = "no message within the deadline" if c.welcome_at else "no welcome within the deadline"

        ack_times: list[float] = []

        async def agent_sends(ag: Client, tickets: list[int], t0: float) -> None:
            window = asyncio.Semaphore(args.agent_window)

            async def one(tid: int) -> None:
                async with window:
                    await ag.request({"type": "send", "ticket": tid, "body": f"Reply to ticket {tid}: on its way.",
                                      "client_id": f"storm-{tid}-{os.getpid()}"}, timeout=deadline_s)
                    ack_times.append(time.perf_counter() - t0)

            res = await asyncio.gather(*(one(tid) for tid in tickets), return_exceptions=True)
            bad = [r for r in res if isinstance(r, BaseException)]
            if bad:
                log(f"[storm] agent: {len(bad)} sends failed; first: {bad[0]!r}")

        tids = list(by_ticket)
        rng.shuffle(tids)
        shares = [tids[i::len(agents)] for i in range(len(agents))]
        cpu0, b_cpu0 = cpu_seconds(), proc_cpu_seconds(b.pid)
        t0 = time.perf_counter()
        os.kill(a.pid, signal.SIGKILL)
        profilers = start_profilers(args, b.pid, env.dbname) if args.profile else []
        tasks = [asyncio.ensure_future(reconnect(c, t0)) for c in customers]
        tasks += [asyncio.ensure_future(agent_sends(ag, share, t0)) for ag, share in zip(agents, shares, strict=True)]
        await asyncio.wait(tasks, timeout=deadline_s + 5)
        t_end = time.perf_counter()
        for task in tasks:
            task.cancel()
        cpu1, b_cpu1 = cpu_seconds(), proc_cpu_seconds(b.pid)
        a.proc.wait(5) if a.proc else None
        wait_all(profilers)

        done = [c for c in customers if c.done_at is not None]
        failed = [c for c in customers if c.done_at is None]
        total = max((c.done_at - t0 for c in done), default=float("nan"))
        result = {
            "done": summary_ms([c.done_at - t0 for c in done]),  # type: ignore[operator]
            "welcome": summary_ms([c.welcome_at - t0 for c in customers if c.welcome_at]),
            "lost": summary_ms([c.lost_at - t0 for c in customers if c.lost_at]),
            "acks": summary_ms(ack_times),
            "total_s": total, "failed": len(failed), "n": n,
            "retries": sum(max(0, c.attempts - 1) for c in customers),
            "client_cpu_s": cpu1 - cpu0, "b_cpu_s": b_cpu1 - b_cpu0, "wall_s": t_end - t0,
            "hello_cpu_us": hello_cpu_us,
            "first_failures": [f"customer {c.k} ticket {c.ticket}: {c.error}" for c in failed[:5]],
        }
        for ag in agents:
            await ag.close()
        await gather_limited(256, (c.client.close() for c in customers if c.client is not None))
        problems = [p for s in env.servers if s.name == "B" for p in s.log_problems()]
    finally:
        await env.cleanup()

    ok = result["failed"] == 0 and result["total_s"] <= args.target
    print(f"storm: {n} customers on A (SIGKILL) -> reconnect to B with resume; {args.agents} agents on B send 1 "
          f"message per ticket at the same time; client concurrency {args.concurrency}, jitter {args.jitter} s; "
          f"rate limits {args.rate_limits}")
    print(f"  done (welcome + missed message), from the kill: {fmt_ms(result['done'])}")
    print(f"  welcome from B, from the kill:                  {fmt_ms(result['welcome'])}")
    print(f"  socket to A seen closed, from the kill:         {fmt_ms(result['lost'])}")
    print(f"  agents' acks, from the kill:                    {fmt_ms(result['acks'])}")
    print(f"  total (last customer done): {result['total_s']:.2f} s; failed: {result['failed']}/{n}; "
          f"retries: {result['retries']}")
    print(f"  first connect (fresh hello, no resume) on A: server CPU {result['hello_cpu_us']:.0f} µs per hello")
    print(f"  CPU during the storm: server B {result['b_cpu_s']:.2f} s, this client {result['client_cpu_s']:.2f} s "
          f"(wall {result['wall_s']:.2f} s; 2 cores shared with Redis and PostgreSQL)")
    for line in result["first_failures"]:
        print(f"  failure: {line}")
    print(f"  target: all {n} done within {args.target:g} s: {'MET' if ok else 'MISSED'}")
    if problems:
        print(f"  server B log warnings/errors: {len(problems)}; first: {problems[0]}")
    if result["failed"]:
        rc = 1
    return rc


def start_profilers(args: argparse.Namespace, pid: int, dbname: str) -> list[subprocess.Popen[bytes]]:
    """py-spy on server B (folded + speedscope) and pg_stat_activity samples, in the background."""
    Path(args.profile).mkdir(parents=True, exist_ok=True)
    spy = str(Path(args.python).parent / "py-spy")
    secs = str(int(min(args.timeout, 20)))
    procs = [subprocess.Popen([spy, "record", "--pid", str(pid), "--duration", secs, "--rate", "200", "--nonblocking",
                               "--format", fmt, "-o", f"{args.profile}/B.{ext}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for fmt, ext in (("raw", "folded"), ("speedscope", "speedscope.json"))]
    with open(f"{args.profile}/pgwait.txt", "wb") as out:
        procs.append(subprocess.Popen([args.python, str(Path(__file__).with_name("pgwait.py")), "--seconds", secs,
                                       "--pg", args.pg, "--db-like", dbname], stdout=out, stderr=subprocess.STDOUT))
    return procs


def wait_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--customers", type=int, default=2000, help="customers on A (default %(default)s)")
    p.add_argument("--agents", type=int, default=10, help="agent connections on B (default %(default)s)")
    p.add_argument("--agent-window", type=int, default=16, help="sends in flight per agent (default %(default)s)")
    p.add_argument("--concurrency", type=int, default=500,
                   help="reconnect handshakes in flight from this client at once (default %(default)s)")
    p.add_argument("--jitter", type=float, default=0.0, help="spread first retries over S seconds (default 0)")
    p.add_argument("--target", type=float, default=5.0, help="seconds (default %(default)s)")
    p.add_argument("--timeout", type=float, default=60.0, help="give up after S seconds (default %(default)s)")
    p.add_argument("--profile", metavar="DIR", help="record server B with py-spy (and pg_stat_activity) during "
                   "the storm into DIR (needs .venv/bin/pip install py-spy)")
    p.add_argument("--smoke", action="store_true", help="50 customers, a few seconds")
    add_service_args(p, rate_limits="off")
    return p.parse_args(argv)


if __name__ == "__main__":
    use_uvloop()
    sys.exit(asyncio.run(main(parse())))
