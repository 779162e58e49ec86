"""Reconnect storm: node A dies with N customers on it; they all reconnect to node B
with `hello.resume` while agents on B write to every ticket.

    .venv/bin/python bench/storm.py                 # 2000 customers, target 2.5 s
    .venv/bin/python bench/storm.py --customers 10000   # 10,000 on the one surviving node, target 12 s
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
were done within --target seconds (by size: 2.5 s for 2,000, 12 s for 10,000). Client
CPU is printed too: this process shares the 2 cores with B, Redis and PostgreSQL, so a
busy client slows the storm.

At 10,000: this process raises its soft fd limit to the hard limit (the servers
inherit it) and holds every socket; its connections use `_fastws.FastClient` (a bare
asyncio protocol, ~0.35 ms of client CPU per connect + hello) from `--sources`
loopback addresses 127.0.0.2…; the servers get `POMOC_MAX_CONNECTIONS` = customers +
agents + 100 when that exceeds the server's default of 10,000 (B must take all of
them plus the agents).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
    Env,
    add_service_args,
    asyncpg_dsn,
    cpu_seconds,
    fd_limits,
    fmt_ms,
    gather_limited,
    log,
    mint,
    proc_cpu_seconds,
    proc_fd_limit,
    proc_fds,
    raise_fd_limit,
    summary_ms,
    use_uvloop,
)
from _fastws import FastClient, sources  # noqa: E402
from _seed import Seeder, Shape, shop_id, user_id  # noqa: E402

DEFAULT_MAX_CONNECTIONS = 10_000  # the server's POMOC_MAX_CONNECTIONS default


def default_target(n: int) -> float:
    """2.5 s for 2,000 customers, 12 s for 10,000 on one surviving node; linear in
    between, proportional above, the 2,000 figure below."""
    if n <= 2000:
        return 2.5
    if n <= 10_000:
        return 2.5 + (n - 2000) * (12.0 - 2.5) / 8000
    return 12.0 * n / 10_000


@dataclass
class Customer:
    k: int
    token: str
    ticket: int = 0
    last_seq: int = 0
    client: FastClient | None = None
    lost_at: float | None = None       # socket to A closed (seen by the client)
    welcome_at: float | None = None    # welcome from B
    message_at: float | None = None    # the agent's message from B
    attempts: int = 0
    error: str | None = None
    wake: asyncio.Future[None] | None = None  # the message arrived or the connection closed

    @property
    def done_at(self) -> float | None:
        if self.welcome_at is None or self.message_at is None:
            return None
        return max(self.welcome_at, self.message_at)

    def wake_up(self, *_: object) -> None:
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)


async def main(args: argparse.Namespace) -> int:
    if args.smoke:
        args.customers, args.agents, args.timeout = 50, 2, 20.0
    n = args.customers
    if args.target is None:
        args.target = default_target(n)
    if args.timeout is None:
        args.timeout = max(60.0, n / 100)
    fd = raise_fd_limit()
    hard = fd_limits()[1]
    # This process holds every customer's socket (to A, then to B) plus the agents'.
    need = n + args.concurrency + args.agents + 200
    if fd < need:
        log(f"[storm] warning: this process may open {need} files but its fd limit is {fd} (hard {hard}); "
            f"connections will fail with EMFILE")
    src = sources(args.sources)
    rng = random.Random(args.seed)
    env = Env(args, "storm")
    max_conn = n + args.agents + 100
    if max_conn > DEFAULT_MAX_CONNECTIONS:
        env.defaults["POMOC_MAX_CONNECTIONS"] = str(max_conn)
    log(f"[storm] database {env.dbname}; {n} customers, {args.agents} agents; clock {env.clock}; "
        f"fd limit {fd} (servers inherit it); sources {src[0]}..{src[-1]} ({len(src)}); "
        f"server env {env.defaults or 'defaults'}")
    customers = [Customer(k, mint(env.secret, "customer", user_id(k), shop=shop_id(k), name=f"Customer {k}"))
                 for k in range(n)]
    rc = 0
    result: dict[str, Any] = {}
    try:
        await env.create()
        t = time.perf_counter()
        seeder = Seeder(asyncpg_dsn(env.db_url), datetime.fromisoformat(env.clock), seed=args.seed)
        await seeder.seed(Shape(tickets=n, per_ticket=2, tickets_per_shop=1, closed_fraction=0.0, unread=0),
                          log=log)
        log(f"[storm] seeded {n} shops/customers/tickets in {time.perf_counter() - t:.1f} s")
        a = env.server("A").start()
        b = env.server("B").start()
        b_fd_limit = proc_fd_limit(b.pid)
        if 0 < b_fd_limit < n + args.agents + 200:
            log(f"[storm] warning: server B's fd limit {b_fd_limit} is below {n + args.agents + 200}")

        # ---- customers on A
        t = time.perf_counter()
        a_cpu0, c_cpu0 = proc_cpu_seconds(a.pid), cpu_seconds()

        async def on_a(c: Customer) -> None:
            c.client = FastClient(a.url)
            welcome = await c.client.connect(c.token, source=src[c.k % len(src)])
            tickets = welcome.get("tickets") or []
            if len(tickets) != 1:
                raise RuntimeError(f"customer {c.k}: welcome lists {len(tickets)} tickets, expected 1")
            c.ticket, c.last_seq = int(tickets[0]["id"]), int(tickets[0]["last_seq"])

        errors = [e for e in await gather_limited(args.connect_concurrency, (on_a(c) for c in customers))
                  if e is not None]
        if errors:
            raise RuntimeError(f"{len(errors)} customers could not connect to A; first: {errors[0]!r}")
        connect_s = time.perf_counter() - t
        hello_cpu_us = (proc_cpu_seconds(a.pid) - a_cpu0) / n * 1e6
        connect_client_cpu = cpu_seconds() - c_cpu0
        a_fds = proc_fds(a.pid)
        log(f"[storm] {n} customers on A in {connect_s:.1f} s ({n / connect_s:.0f} hello/s, server A CPU "
            f"{hello_cpu_us:.0f} µs per hello, client CPU {connect_client_cpu:.2f} s, A's fds {a_fds})")

        # ---- agents on B
        agents = [FastClient(b.url) for _ in range(args.agents)]
        for i, ag in enumerate(agents):
            await ag.connect(mint(env.secret, "agent", f"storm-agent-{i}", name=f"Agent {i}"), feed=False)
        by_ticket = {c.ticket: c for c in customers}
        await asyncio.sleep(1.0)  # let A and B settle (subscriptions, presence) before the kill

        # ---- the storm
        loop = asyncio.get_running_loop()
        sem = asyncio.Semaphore(args.concurrency)
        deadline_s = args.timeout

        def frame_handler(c: Customer) -> Any:
            def on_frame(frame: dict[str, Any], t: float) -> None:
                if (c.message_at is None and frame.get("type") == "message" and frame.get("ticket") == c.ticket
                        and frame.get("seq", 0) > c.last_seq
                        and (frame.get("author") or {}).get("kind") == "agent"):
                    c.message_at = t
                    c.wake_up()
            return on_frame

        async def reconnect(c: Customer, t0: float) -> None:
            assert c.client is not None
            await c.client.closed.wait()
            c.lost_at = time.perf_counter()
            if args.jitter:
                await asyncio.sleep(rng.uniform(0, args.jitter))
            while (left := deadline_s - (time.perf_counter() - t0)) > 0:
                c.attempts += 1
                c.wake = loop.create_future()
                client = FastClient(b.url, on_frame=frame_handler(c), on_close=c.wake_up)
                try:
                    async with sem:
                        await client.connect(c.token, resume={c.ticket: c.last_seq}, timeout=max(1.0, left),
                                             source=src[c.k % len(src)])
                    c.welcome_at = client.welcome_at
                    c.client = client
                    if c.message_at is None and not client.closed.is_set():
                        # the replay did not carry it: wait for the live message (or a close)
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(c.wake, max(0.001, deadline_s - (time.perf_counter() - t0)))
                    if c.message_at is not None:
                        return
                    if client.closed.is_set():
                        c.welcome_at = None
                        continue
                except Exception as exc:  # noqa: BLE001  (refused, 1013, timeout: retry like a client would)
                    c.error = repr(exc)[:200]
                    client.abort()
                    await asyncio.sleep(min(1.0, 0.05 * 2 ** min(c.attempts, 5)) * rng.random())
            if c.error is None:
                c.error = "no message within the deadline" if c.welcome_at else "no welcome within the deadline"

        ack_times: list[float] = []

        async def agent_sends(ag: FastClient, tickets: list[int], t0: float) -> None:
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
        b_fds = proc_fds(b.pid)
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
            "hello_cpu_us": hello_cpu_us, "connect_s": connect_s, "connect_client_cpu_s": connect_client_cpu,
            "a_fds": a_fds, "b_fds": b_fds, "b_fd_limit": b_fd_limit,
            "first_failures": [f"customer {c.k} ticket {c.ticket}: {c.error}" for c in failed[:5]],
        }
        for ag in agents:
            await ag.close()
        await gather_limited(512, (c.client.close() for c in customers if c.client is not None))
        problems = [p for s in env.servers if s.name == "B" for p in s.log_problems()]
    finally:
        await env.cleanup()

    ok = result["failed"] == 0 and result["total_s"] <= args.target
    print(f"storm: {n} customers on A (SIGKILL) -> all reconnect to B, the one surviving node, with resume; "
          f"{args.agents} agents on B send 1 message per ticket at the same time; client concurrency "
          f"{args.concurrency}, jitter {args.jitter} s; rate limits {args.rate_limits}; "
          f"{len(src)} source addresses; fd limit {fd}")
    print(f"  done (welcome + missed message), from the kill: {fmt_ms(result['done'])}")
    print(f"  welcome from B, from the kill:                  {fmt_ms(result['welcome'])}")
    print(f"  socket to A seen closed, from the kill:         {fmt_ms(result['lost'])}")
    print(f"  agents' acks, from the kill:                    {fmt_ms(result['acks'])}")
    print(f"  total (last customer done): {result['total_s']:.2f} s; failed: {result['failed']}/{n}; "
          f"retries: {result['retries']}")
    print(f"  first connect (fresh hello, no resume) on A: {n} in {result['connect_s']:.1f} s "
          f"({n / result['connect_s']:.0f}/s), server CPU {result['hello_cpu_us']:.0f} µs per hello, "
          f"client CPU {result['connect_client_cpu_s']:.2f} s; A's fds {result['a_fds']}")
    print(f"  CPU during the storm: server B {result['b_cpu_s']:.2f} s "
          f"({result['b_cpu_s'] / n * 1e6:.0f} µs per resumed hello incl. the agents' {n} sends), "
          f"this client {result['client_cpu_s']:.2f} s (wall {result['wall_s']:.2f} s; 2 cores shared with Redis "
          f"and PostgreSQL); B's fds after {result['b_fds']} (limit {result['b_fd_limit']})")
    for line in result["first_failures"]:
        print(f"  failure: {line}")
    print(f"  target: all {n} done within {args.target:g} s: {'MET' if ok else 'MISSED'}"
          f"{' (default for this size: 2.5 s at 2,000, 12 s at 10,000)' if args.target_default else ''}")
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
    p.add_argument("--connect-concurrency", type=int, default=64,
                   help="first connects to A in flight at once (default %(default)s)")
    p.add_argument("--sources", type=int, default=4,
                   help="loopback source addresses 127.0.0.2… for the client's sockets (default %(default)s)")
    p.add_argument("--target", type=float, default=None,
                   help="seconds (default by size: 2.5 s for 2,000 customers, 12 s for 10,000 on the one "
                        "surviving node, linear in between)")
    p.add_argument("--timeout", type=float, default=None,
                   help="give up after S seconds (default max(60, customers/100))")
    p.add_argument("--profile", metavar="DIR", help="record server B with py-spy (and pg_stat_activity) during "
                   "the storm into DIR (needs .venv/bin/pip install py-spy)")
    p.add_argument("--smoke", action="store_true", help="50 customers, a few seconds")
    add_service_args(p, rate_limits="off")
    args = p.parse_args(argv)
    args.target_default = args.target is None
    return args


if __name__ == "__main__":
    use_uvloop()
    sys.exit(asyncio.run(main(parse())))
