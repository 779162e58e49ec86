"""Idle connections: N authenticated customers held on one node, and what they cost it.

    .venv/bin/python bench/idle.py                  # 20,000 connections (capped by the server's fd limit)
    .venv/bin/python bench/idle.py --connections 5000 --hold 5
    .venv/bin/python bench/idle.py --smoke          # 200 connections, a few seconds

Steps: fresh PostgreSQL database + `python -m server migrate`; one server A
(subprocess, real Redis under a private prefix, `POMOC_MAX_CONNECTIONS` raised to
the run's size). 20 warm-up customers connect and leave (like the peer harness);
once A's CPU is quiet its RSS and file descriptors are read. Then `--workers`
client processes (each holds its share: one process may not have 20,000 sockets
under this machine's 20,000-file limit, and two of them use both cores) open
`--connections` customer connections, each its own shop as the peer harness does
(`sub bench-user-<i>`, `shop bench-<i>`, hello -> welcome, no tickets), with at most
`--concurrency` handshakes in flight in total, from several loopback source
addresses. The connections are held for `--hold` seconds (default 25: longer
than the server's 20 s WebSocket ping interval, so every one has answered a ping);
meanwhile a fresh customer connects, opens a ticket and sends a message. Then the
workers close everything and A's state after the close is read.

Printed: connections held, failures, unexpected closes while held; handshake rate;
A's CPU for the handshakes (µs per hello, until A is quiet again); A's RSS before,
after and per connection (KiB, as the harness computes it: RSS delta / opened),
A's file descriptors and fd limit; the fresh customer's hello/ticket/send times;
after the close, A's RSS and fds and whether it still answers. Exit 1 if a
connection failed or was closed while held, or the fresh customer could not talk.

A server holds one file descriptor per connection plus its own (~50-100: the
database and Redis pools, the listening socket). The tool raises its soft fd limit
to the hard limit before starting the server, which inherits it; when the hard
limit leaves room for fewer than `--connections`, N is capped to what fits and the
cap is printed (`--no-cap` tries anyway, to see how the server copes with EMFILE).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    Env,
    add_service_args,
    cpu_seconds,
    fd_limits,
    gather_limited,
    log,
    mint,
    proc_cpu_seconds,
    proc_fd_limit,
    proc_fds,
    proc_rss,
    raise_fd_limit,
    use_uvloop,
)
from _fastws import FastClient, sources  # noqa: E402

DEFAULT_MAX_CONNECTIONS = 10_000  # the server's POMOC_MAX_CONNECTIONS default
SERVER_FD_MARGIN = 100  # the server's pools may still grow (Redis up to 64, PostgreSQL 10 + 10 overflow)
SECRET_ENV = "PBENCH_IDLE_SECRET"
SELF = str(Path(__file__).resolve())


def customer_token(secret: str, i: int) -> str:
    return mint(secret, "customer", f"bench-user-{i}", shop=f"bench-{i}")


# ------------------------------------------------------------------ worker process
async def worker(plan: dict[str, Any]) -> int:
    """Open plan['count'] connections on GO, hold them, report, close them on CLOSE.
    Talks JSON lines: commands on stdin, answers on stdout."""
    raise_fd_limit()
    secret = os.environ[SECRET_ENV]
    src = sources(plan["sources"])
    first, count = plan["first"], plan["count"]
    tokens = [customer_token(secret, i) for i in range(first, first + count)]
    clients: list[FastClient | None] = [None] * count
    state = {"unexpected": 0, "codes": {}}
    closing = False

    def on_close(c: FastClient) -> None:
        if not closing and c.welcome is not None:
            state["unexpected"] += 1
            code = str(c.close_code)
            state["codes"][code] = state["codes"].get(code, 0) + 1

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def say(**kw: Any) -> None:
        sys.stdout.write(json.dumps(kw) + "\n")
        sys.stdout.flush()

    say(event="ready")
    errors: list[str] = []
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = line.decode().strip()
        if cmd == "go":
            cpu0 = cpu_seconds()

            async def one(j: int) -> None:
                c = FastClient(plan["url"], on_close=on_close)
                try:
                    await c.connect(tokens[j], source=src[(first + j) % len(src)], timeout=plan["timeout"])
                    clients[j] = c
                except Exception as exc:  # noqa: BLE001
                    c.abort()
                    errors.append(f"bench-user-{first + j}: {exc!r}"[:200])

            await gather_limited(plan["concurrency"], (one(j) for j in range(count)))
            say(event="opened", at=time.monotonic(), ok=sum(1 for c in clients if c is not None),
                failed=len(errors), errors=errors[:3], cpu_s=cpu_seconds() - cpu0)
        elif cmd == "status":
            say(event="status", alive=sum(1 for c in clients if c is not None and not c.closed.is_set()),
                unexpected=state["unexpected"], codes=state["codes"])
        elif cmd == "close":
            closing = True
            cpu0 = cpu_seconds()
            t = time.monotonic()
            await gather_limited(256, (c.close() for c in clients if c is not None))
            say(event="closed", at=time.monotonic(), s=time.monotonic() - t, cpu_s=cpu_seconds() - cpu0)
            break
    return 0


# ------------------------------------------------------------------ coordinator
class Worker:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def tell(self, cmd: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((cmd + "\n").encode())
        await self.proc.stdin.drain()

    async def hear(self, event: str, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        assert self.proc.stdout is not None
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
            if not line:
                raise RuntimeError(f"client worker {self.proc.pid} exited ({await self.proc.wait()}) "
                                   f"while we waited for {event!r}")
            msg = json.loads(line)
            if msg.get("event") == event:
                return msg


async def wait_quiet(pid: int, *, below: float = 0.05, hold_s: float = 1.0, timeout: float = 20.0,  # noqa: ASYNC109
                     step: float = 0.25) -> float:
    """Wait until the process uses < `below` of a core for `hold_s` (bounded by timeout)."""
    t0 = time.monotonic()
    last = proc_cpu_seconds(pid)
    quiet_since: float | None = None
    while time.monotonic() - t0 < timeout:
        await asyncio.sleep(step)  # sampling another process's CPU, not synchronization
        now = proc_cpu_seconds(pid)
        if (now - last) / step < below:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= hold_s:
                break
        else:
            quiet_since = None
        last = now
    return time.monotonic() - t0


async def wait_fds_below(pid: int, limit: int, timeout: float, step: float = 0.1) -> float | None:  # noqa: ASYNC109
    """Seconds until the process has fewer than `limit` fds (None: not within timeout)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if 0 <= proc_fds(pid) < limit:
            return time.monotonic() - t0
        await asyncio.sleep(step)  # sampling another process's fds, not synchronization
    return None


def problem_summary(lines: list[str]) -> str:
    """'event (error) × n' for the server's warning/error log lines."""
    counts: dict[str, int] = {}
    for line in lines:
        try:
            rec = json.loads(line)
            key = f"{rec.get('event')} ({rec.get('error')})" if rec.get("error") else str(rec.get("event"))
        except ValueError:
            key = line[:80]
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{k} × {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            return bool(r.status == 200)
    except OSError:
        return False


async def probe(url: str, secret: str, src: str) -> dict[str, Any]:
    """A fresh customer while the others are held: hello, open a ticket, send a message."""
    out: dict[str, Any] = {}
    c = FastClient(url)
    try:
        t = time.perf_counter()
        await c.connect(customer_token(secret, 999_999), source=src, timeout=30)
        out["hello_ms"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        reply = await c.request({"type": "open_ticket", "title": "Still there?", "body": "A question while it is busy.",
                                 "severity": "question", "client_id": f"idle-probe-{os.getpid()}-t"}, timeout=30)
        out["ticket_ms"] = (time.perf_counter() - t) * 1000
        tid = int(reply["ticket"]["id"])
        t = time.perf_counter()
        ack = await c.request({"type": "send", "ticket": tid, "body": "And one more line.",
                               "client_id": f"idle-probe-{os.getpid()}-m"}, timeout=30)
        out["send_ms"] = (time.perf_counter() - t) * 1000
        out["ack"] = ack.get("type")
        out["ok"] = ack.get("type") == "ack"
    except Exception as exc:  # noqa: BLE001
        out["ok"] = False
        out["error"] = repr(exc)[:300]
    finally:
        await c.close()
    return out


async def main(args: argparse.Namespace) -> int:
    if args.smoke:
        args.connections, args.hold, args.workers = 200, 0.5, 2
    requested = n = args.connections
    fd = raise_fd_limit()
    hard = fd_limits()[1]
    src = sources(args.sources)
    env = Env(args, "idle")
    if n + 1000 > DEFAULT_MAX_CONNECTIONS:
        env.defaults["POMOC_MAX_CONNECTIONS"] = str(n + 1000)
    log(f"[idle] database {env.dbname}; {n} connections; clock {env.clock}; fd limit {fd} (hard {hard}, "
        f"the server inherits it); sources {src[0]}..{src[-1]} ({len(src)}); server env {env.defaults or 'defaults'}")
    rc = 0
    res: dict[str, Any] = {}
    workers: list[Worker] = []
    try:
        await env.create()
        a = env.server("A").start()
        fd_limit_a = proc_fd_limit(a.pid)

        # warm-up (code paths, pools), as the harness does, then a quiet baseline
        warm = [FastClient(a.url) for _ in range(20)]
        await asyncio.gather(*(c.connect(customer_token(env.secret, 900_000 + i), source=src[0])
                               for i, c in enumerate(warm)))
        await asyncio.gather(*(c.close() for c in warm))
        await wait_quiet(a.pid)
        rss0, fds0 = proc_rss(a.pid), proc_fds(a.pid)
        capacity = fd_limit_a - fds0 - SERVER_FD_MARGIN if fd_limit_a > 0 else n
        capped = False
        if n > capacity and not args.no_cap:
            capped = True
            n = max(1, capacity)
            log(f"[idle] capping at {n} connections: server A's fd limit is {fd_limit_a}, it uses {fds0} "
                f"at rest, {SERVER_FD_MARGIN} kept for its pools (--no-cap to try {requested} anyway)")
        nw = max(args.workers, math.ceil(n / max(1, fd - 200)))
        share = [n // nw + (1 if i < n % nw else 0) for i in range(nw)]
        wenv = {**os.environ, SECRET_ENV: env.secret}
        firsts = [sum(share[:i]) for i in range(nw)]
        for i in range(nw):
            plan = {"url": a.url, "first": firsts[i], "count": share[i], "sources": args.sources,
                    "concurrency": max(1, args.concurrency // nw), "timeout": args.timeout}
            proc = await asyncio.create_subprocess_exec(
                sys.executable, SELF, "--worker", json.dumps(plan),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=wenv)
            workers.append(Worker(proc))
        for w in workers:
            await w.hear("ready", 120)

        # ---- open
        cpu0 = proc_cpu_seconds(a.pid)
        t0 = time.monotonic()
        for w in workers:
            await w.tell("go")
        opened = [await w.hear("opened", args.timeout + n / 10) for w in workers]
        t_open = max(o["at"] for o in opened) - t0
        cpu_open = proc_cpu_seconds(a.pid) - cpu0
        ok = sum(o["ok"] for o in opened)
        failed = sum(o["failed"] for o in opened)
        quiet_s = await wait_quiet(a.pid)
        cpu_until_quiet = proc_cpu_seconds(a.pid) - cpu0
        rss1, fds1 = proc_rss(a.pid), proc_fds(a.pid)
        log(f"[idle] {ok} open ({failed} failed) in {t_open:.1f} s; A quiet {quiet_s:.1f} s later; "
            f"RSS {rss1 / 2**20:.0f} MiB, {fds1} fds; holding {args.hold:g} s")

        # ---- hold, and a fresh customer meanwhile
        t_hold = time.monotonic()
        check = await probe(a.url, env.secret, src[-1])
        left = args.hold - (time.monotonic() - t_hold)
        if left > 0:
            await asyncio.sleep(left)  # holding the connections is the point of the tool
        for w in workers:
            await w.tell("status")
        status = [await w.hear("status", 60) for w in workers]
        rss2, fds2 = proc_rss(a.pid), proc_fds(a.pid)
        alive = sum(s["alive"] for s in status)
        unexpected = sum(s["unexpected"] for s in status)
        codes: dict[str, int] = {}
        for s in status:
            for k, v in s["codes"].items():
                codes[k] = codes.get(k, 0) + v

        # ---- close
        t = time.monotonic()
        for w in workers:
            await w.tell("close")
        closed = [await w.hear("closed", 120) for w in workers]
        close_s = max(c["at"] for c in closed) - t
        # the clients are done (or gave up after 2 s each); the server may still be running
        # its disconnect handlers: wait (bounded) until its sockets are gone
        server_close_s = await wait_fds_below(a.pid, fds0 + SERVER_FD_MARGIN, timeout=120)
        server_close_s = server_close_s + close_s if server_close_s is not None else None
        await wait_quiet(a.pid)
        rss3, fds3 = proc_rss(a.pid), proc_fds(a.pid)
        still = ready(a.port)
        res = {
            "requested": requested, "n": n, "capped": capped, "ok": ok, "failed": failed,
            "errors": [e for o in opened for e in o["errors"]][:3], "t_open": t_open,
            "cpu_open": cpu_open, "cpu_until_quiet": cpu_until_quiet, "quiet_s": quiet_s,
            "client_cpu_open": sum(o["cpu_s"] for o in opened), "client_cpu_close": sum(c["cpu_s"] for c in closed),
            "rss0": rss0, "rss1": rss1, "rss2": rss2, "rss3": rss3,
            "fds0": fds0, "fds1": fds1, "fds2": fds2, "fds3": fds3, "fd_limit_a": fd_limit_a,
            "alive": alive, "unexpected": unexpected, "codes": codes, "check": check,
            "close_s": close_s, "server_close_s": server_close_s, "ready_after": still, "workers": nw,
        }
        problems = a.log_problems()
    finally:
        for w in workers:
            if w.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.kill()
                await w.proc.wait()
        await env.cleanup()

    r = res
    kib = (max(r["rss1"], r["rss2"]) - r["rss0"]) / 1024 / max(1, r["ok"])
    print(f"idle: {r['n']} idle authenticated customers (each its own shop) on one node, {r['workers']} client "
          f"processes, {args.concurrency} handshakes in flight, {len(src)} source addresses; "
          f"rate limits {args.rate_limits}")
    if r["capped"]:
        print(f"  CAPPED: {r['requested']} requested, {r['n']} tried: server A's fd limit {r['fd_limit_a']} "
              f"(this machine's hard limit) minus its {r['fds0']} fds at rest and {SERVER_FD_MARGIN} for its pools")
    print(f"  held: {r['ok']}/{r['n']}; failed: {r['failed']}; closed while held: {r['unexpected']}"
          f"{' ' + str(r['codes']) if r['codes'] else ''}; still open after {args.hold:g} s: {r['alive']}")
    for e in r["errors"]:
        print(f"  failure: {e}")
    print(f"  handshakes (connect + upgrade + hello -> welcome): {r['ok'] / r['t_open']:.0f}/s "
          f"({r['ok']} in {r['t_open']:.1f} s)")
    print(f"  server CPU for the handshakes: {r['cpu_open']:.2f} s = {r['cpu_open'] / max(1, r['ok']) * 1e6:.0f} µs "
          f"per hello while opening; {r['cpu_until_quiet']:.2f} s = "
          f"{r['cpu_until_quiet'] / max(1, r['ok']) * 1e6:.0f} µs until quiet ({r['quiet_s']:.1f} s after); "
          f"clients' CPU {r['client_cpu_open']:.2f} s")
    print(f"  server RSS: before {r['rss0'] / 2**20:.1f} MiB, held {r['rss1'] / 2**20:.1f} MiB, "
          f"after the hold {r['rss2'] / 2**20:.1f} MiB; per connection {kib:.1f} KiB")
    print(f"  server fds: before {r['fds0']}, held {r['fds1']}, after the hold {r['fds2']} (limit {r['fd_limit_a']})")
    c = r["check"]
    if c.get("ok"):
        print(f"  fresh customer while held: hello {c['hello_ms']:.1f} ms, open_ticket {c['ticket_ms']:.1f} ms, "
              f"send -> ack {c['send_ms']:.1f} ms: ok")
    else:
        print(f"  fresh customer while held: FAILED {c}")
    srv = f"{r['server_close_s']:.1f} s" if r["server_close_s"] is not None else "not within 120 s"
    print(f"  close: clients done in {r['close_s']:.1f} s (CPU {r['client_cpu_close']:.2f} s), server's sockets "
          f"gone after {srv}; after: "
          f"RSS {r['rss3'] / 2**20:.1f} MiB, {r['fds3']} fds; server answers /readyz: "
          f"{'yes' if r['ready_after'] else 'NO'}")
    if problems:
        print(f"  server log warnings/errors: {len(problems)}: {problem_summary(problems)}; first: {problems[0]}")
    if r["failed"] or r["unexpected"] or not c.get("ok") or not r["ready_after"]:
        rc = 1
    return rc


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connections", type=int, default=20_000, help="idle customers to hold (default %(default)s)")
    p.add_argument("--concurrency", type=int, default=64,
                   help="handshakes in flight, all client processes together (default %(default)s)")
    p.add_argument("--workers", type=int, default=2,
                   help="client processes (more if one would exceed its fd limit; default %(default)s)")
    p.add_argument("--sources", type=int, default=4,
                   help="loopback source addresses 127.0.0.2… for the clients' sockets (default %(default)s)")
    p.add_argument("--hold", type=float, default=25.0,
                   help="seconds to hold them (default %(default)s: past the server's 20 s ping interval)")
    p.add_argument("--timeout", type=float, default=60.0, help="per handshake (default %(default)s)")
    p.add_argument("--no-cap", action="store_true", help="try --connections even beyond the server's fd limit")
    p.add_argument("--smoke", action="store_true", help="200 connections, a few seconds")
    p.add_argument("--worker", metavar="PLAN", help=argparse.SUPPRESS)
    add_service_args(p)
    return p.parse_args(argv)


if __name__ == "__main__":
    use_uvloop()
    ns = parse()
    if ns.worker:
        sys.exit(asyncio.run(worker(json.loads(ns.worker))))
    sys.exit(asyncio.run(main(ns)))
