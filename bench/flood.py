"""Isolation under a flood (issue 8): one shop floods, another shop's conversation
must not notice. Rate limits stay at their defaults (do not pass --rate-limits off).

    .venv/bin/python bench/flood.py                 # 20 s quiet + 20 s under a 1,000 msg/s flood
    .venv/bin/python bench/flood.py --flood-rate 2000 --flood-connections 16
    .venv/bin/python bench/flood.py --smoke         # a few seconds each

Servers A and B on a fresh PostgreSQL database and real Redis (private prefix).

- The normal conversation: shop S1's customer on A opens a ticket; an agent on B
  follows it. They take turns writing at `--rate` (5) msg/s in total (customer ->
  agent, agent -> customer, ...); every message waits for its delivery (`message`
  frame on the other side, `--timeout` s at most) before the next may go. Measured:
  delivery latency (send -> `message` on the other node) and ack latency.
- Phase 1 "quiet": `--seconds` (20) after `--warmup` (2) with nothing else going on.
- Phase 2 "flood": a separate process (its own event loop and CPU, like a real
  abusive script) opens `--flood-connections` (8) connections for `--flood-users` (4)
  users of shop S2, spread over A and B (`--flood-nodes`), and sends `send` frames
  to an S2 ticket as fast as the schedule allows (`--flood-rate` (1000) msg/s in
  total), never waiting for acks. It counts acks, `rate_limited` errors (and any
  without `retry_after`), other errors and closes by code, and reconnects at once
  whenever the server closes a connection (4429 after too many `rate_limited`).
  After `--ramp` (2) s the normal conversation is measured again for `--seconds`.

Printed: both phases' delivery/ack p50/p95/p99/max, the flood/quiet ratio per
percentile (target <= 2x), the flood's counts, A's and B's CPU per phase.
Exit status 1 when something was *wrong*: the normal conversation got an error frame
(e.g. `rate_limited` for S1: limits leaking across shops) or lost a message, a
`rate_limited` came without `retry_after`, or the flood process failed. Never for
slowness.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    Client,
    Env,
    add_service_args,
    cpu_seconds,
    fmt_ms,
    log,
    mint,
    paced,
    proc_cpu_seconds,
    summary_ms,
    use_uvloop,
)

S1, S2 = "flood-s1", "flood-s2"
SELF = str(Path(__file__).resolve())


# ------------------------------------------------------------------ the flooder (own process)
async def flood_worker(cfg: dict[str, Any]) -> dict[str, Any]:
    """Runs in a child process; prints READY once every connection said hello once,
    then floods until cfg['until_s'] seconds after start; returns the counts."""
    counts: collections.Counter[str] = collections.Counter()
    closes: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    samples: dict[str, Any] = {}
    retry_after: list[float] = []
    conns, rate = int(cfg["connections"]), float(cfg["rate"])
    per_conn = rate / conns
    urls, tokens, ticket = cfg["urls"], cfg["tokens"], int(cfg["ticket"])
    t_start = time.perf_counter()
    end = t_start + float(cfg["seconds"])
    ready = asyncio.Event()
    up = 0

    def on_frame(frame: dict[str, Any], t: float) -> None:
        kind = frame.get("type")
        if kind == "ack":
            counts["acked"] += 1
        elif kind == "message":
            counts["message_frames"] += 1
        elif kind == "error":
            code = str(frame.get("code"))
            errors[code] += 1
            if code == "rate_limited":
                ra = frame.get("retry_after")
                if not isinstance(ra, int | float) or ra <= 0:
                    counts["rate_limited_without_retry_after"] += 1
                    samples.setdefault("rate_limited_without_retry_after", frame)
                else:
                    retry_after.append(float(ra))
                samples.setdefault("rate_limited", frame)
            else:
                samples.setdefault(f"error_{code}", frame)

    async def one(i: int) -> None:
        nonlocal up
        url, token = urls[i % len(urls)], tokens[i % len(tokens)]
        first = True
        n = 0
        while time.perf_counter() < end:
            client = Client(url, on_frame=on_frame)
            counts["connects"] += 1
            try:
                await client.connect(token, timeout=10)
            except Exception as exc:  # noqa: BLE001  (refused hello: count, retry like a script would)
                counts["connect_failures"] += 1
                samples.setdefault("connect_failure", repr(exc)[:200])
                await client.close()
                if client.close_code is not None:
                    closes[str(client.close_code)] += 1
                await asyncio.sleep(0.05)
                continue
            if first:
                first = False
                up += 1
                if up == conns:
                    ready.set()
            try:
                while not client.closed.is_set():
                    now = time.perf_counter()
                    if now >= end:
                        break
                    # One schedule per connection slot across reconnects: time spent
                    # reconnecting is caught up (at most 64 frames per loop turn).
                    due = int((now - t_start) * per_conn) + 1
                    for _ in range(max(0, min(due - n, 64))):
                        n += 1
                        await client.send({"type": "send", "ticket": ticket, "ref": n,
                                           "client_id": f"fl{i}-{n}", "body": f"spam {i}-{n} buy now!!!"})
                        counts["sent"] += 1
                    await asyncio.sleep(0.004)
            except Exception as exc:  # noqa: BLE001  (the socket went away under a send)
                samples.setdefault("send_failure", repr(exc)[:200])
            if client.closed.is_set():
                closes[str(client.close_code)] += 1
            elif time.perf_counter() >= end:
                with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                    await asyncio.wait_for(client.closed.wait(), 0.5)  # last acks
            await client.close()

    async def announce() -> None:
        with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
            await asyncio.wait_for(ready.wait(), 30)
        print("READY", flush=True)

    cpu0 = cpu_seconds()
    announcer = asyncio.ensure_future(announce())
    await asyncio.gather(*(one(i) for i in range(conns)))
    await announcer
    wall = time.perf_counter() - t_start
    return {"counts": dict(counts), "errors": dict(errors), "closes": dict(closes), "samples": samples,
            "retry_after_min": min(retry_after, default=None), "retry_after_max": max(retry_after, default=None),
            "wall_s": wall, "cpu_s": cpu_seconds() - cpu0}


def worker_main(path: str) -> int:
    cfg = json.loads(Path(path).read_text())
    result = asyncio.run(flood_worker(cfg))
    print("RESULT " + json.dumps(result), flush=True)
    return 0


# ------------------------------------------------------------------ the measuring process
async def main(args: argparse.Namespace) -> int:
    if args.smoke:
        args.seconds, args.warmup, args.ramp, args.flood_connections, args.flood_users = 3.0, 0.5, 1.0, 4, 2
    if args.rate_limits == "off":
        log("[flood] warning: --rate-limits off; the point of this tool is the default limits")
    env = Env(args, "flood")
    log(f"[flood] database {env.dbname}; normal {args.rate} msg/s; flood {args.flood_rate} msg/s over "
        f"{args.flood_connections} connections of {args.flood_users} users; clock {env.clock}")
    waiters: dict[str, tuple[float, asyncio.Future[float]]] = {}
    acks: dict[str, float] = {}
    normal_errors: list[dict[str, Any]] = []
    phases: dict[str, dict[str, Any]] = {}
    flood: dict[str, Any] = {}
    flood_rc: int | None = None
    problems: list[str] = []
    rc = 0
    try:
        await env.create()
        a = env.server("A").start()
        b = env.server("B").start()

        def on_frame(frame: dict[str, Any], t: float) -> None:
            kind = frame.get("type")
            cid = frame.get("client_id") or ""
            if kind == "message":
                entry = waiters.get(cid)
                if entry is not None and not entry[1].done():
                    entry[1].set_result(t)
            elif kind == "ack":
                entry = waiters.get(cid)
                if entry is not None:
                    acks[cid] = t - entry[0]
            elif kind == "error":
                normal_errors.append(frame)

        customer = Client(a.url, on_frame=on_frame)
        await customer.connect(mint(env.secret, "customer", "s1-user", shop=S1, name="Normal customer"))
        reply = await customer.request({"type": "open_ticket", "title": "Where is my parcel?",
                                        "body": "Hello, a normal question.", "severity": "question",
                                        "client_id": str(uuid.uuid4())})
        t1 = int(reply["ticket"]["id"])
        agent = Client(b.url, on_frame=on_frame)
        await agent.connect(mint(env.secret, "agent", "flood-agent", name="Anna"), feed=False)
        await agent.request({"type": "follow", "ticket": t1})

        flooder_tokens = [mint(env.secret, "customer", f"s2-user-{k}", shop=S2, name=f"Flooder {k}")
                          for k in range(args.flood_users)]
        opener = Client(a.url)
        await opener.connect(flooder_tokens[0])
        t2 = int((await opener.request({"type": "open_ticket", "title": "Spam", "body": "spam",
                                        "severity": "question", "client_id": str(uuid.uuid4())}))["ticket"]["id"])
        await opener.close()

        async def converse(seconds: float, record: dict[str, Any] | None) -> None:
            async for i in paced(args.rate, seconds):
                c2a = i % 2 == 0
                sender = customer if c2a else agent
                cid = f"n:{i}:{uuid.uuid4().hex[:8]}"
                fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
                t_send = time.perf_counter()
                waiters[cid] = (t_send, fut)
                await sender.send({"type": "send", "ticket": t1, "client_id": cid,
                                   "body": f"{'Customer' if c2a else 'Agent'} line {i}: is the parcel on its way?"})
                try:
                    t_got = await asyncio.wait_for(fut, args.timeout)
                    if record is not None:
                        record["delivery"].append(t_got - t_send)
                        record["c2a" if c2a else "a2c"].append(t_got - t_send)
                except TimeoutError:
                    if record is not None:
                        record["lost"] += 1
                if record is not None:
                    record["sent"] += 1
                    record["cids"].append(cid)

        async def measure(name: str) -> None:
            rec: dict[str, Any] = {"delivery": [], "c2a": [], "a2c": [], "lost": 0, "sent": 0, "cids": []}
            errors_before = len(normal_errors)
            cpu0 = (proc_cpu_seconds(a.pid), proc_cpu_seconds(b.pid))
            t0 = time.perf_counter()
            await converse(args.seconds, rec)
            wall = time.perf_counter() - t0
            cpu1 = (proc_cpu_seconds(a.pid), proc_cpu_seconds(b.pid))
            await asyncio.sleep(0.3)  # late acks
            rec["acks"] = [acks[c] for c in rec["cids"] if c in acks]
            rec["errors"] = normal_errors[errors_before:]
            rec["cpu_a"], rec["cpu_b"], rec["wall"] = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1], wall
            phases[name] = rec
            log(f"[flood] {name}: {fmt_ms(summary_ms(rec['delivery']))}")

        await converse(args.warmup, None)
        await measure("quiet")

        # ---- the flood, in its own process
        cfg = {"urls": [s.url for s in ([a, b] if args.flood_nodes == "both" else [a] if args.flood_nodes == "A"
                                        else [b])],
               "tokens": flooder_tokens, "ticket": t2, "connections": args.flood_connections,
               "rate": args.flood_rate, "seconds": args.ramp + args.seconds + 1.0}
        cfg_path = env.logdir / "flood-worker.json"
        cfg_path.write_text(json.dumps(cfg))  # noqa: ASYNC240  (tiny file, once)
        worker_log = open(env.logdir / "flood-worker.log", "wb")  # noqa: ASYNC230, SIM115
        proc = await asyncio.create_subprocess_exec(
            sys.executable, SELF, "--flood-worker", str(cfg_path),
            stdout=asyncio.subprocess.PIPE, stderr=worker_log)
        worker_log.close()
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 40)
            if line.strip() != b"READY":
                raise RuntimeError(f"flood worker did not get ready: {line!r}")
            flood_cpu0 = proc_cpu_seconds(proc.pid)
            await asyncio.sleep(args.ramp)
            await measure("flood")
            phases["flood"]["cpu_flooder"] = proc_cpu_seconds(proc.pid) - flood_cpu0
            out = await asyncio.wait_for(proc.stdout.read(), 30)
            flood_rc = await asyncio.wait_for(proc.wait(), 10)
            for raw in out.decode(errors="replace").splitlines():
                if raw.startswith("RESULT "):
                    flood = json.loads(raw[7:])
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await customer.close()
        await agent.close()
        problems = [p for s in env.servers for p in s.log_problems()]
    finally:
        await env.cleanup()

    quiet, busy = phases["quiet"], phases["flood"]
    print(f"flood: shop {S1}'s customer on A <-> agent on B at {args.rate:g} msg/s (each waits for delivery), "
          f"{args.seconds:g} s per phase; shop {S2} floods at {args.flood_rate:g} msg/s target over "
          f"{args.flood_connections} connections ({args.flood_users} users, nodes {args.flood_nodes}) from a "
          f"separate process; rate limits {limits_text(env.server_env)}")
    ratios = {}
    for name, rec in (("quiet", quiet), ("flood", busy)):
        print(f"  {name:5} delivery (both directions): {fmt_ms(summary_ms(rec['delivery']))}")
        print(f"  {name:5}   customer(A) -> agent(B):  {fmt_ms(summary_ms(rec['c2a']))}")
        print(f"  {name:5}   agent(B) -> customer(A):  {fmt_ms(summary_ms(rec['a2c']))}")
        print(f"  {name:5} ack:                        {fmt_ms(summary_ms(rec['acks']))}")
        print(f"  {name:5} sent {rec['sent']}, not delivered within {args.timeout:g} s: {rec['lost']}, error frames "
              f"{len(rec['errors'])}; CPU A {rec['cpu_a']:.2f} s, B {rec['cpu_b']:.2f} s in {rec['wall']:.1f} s"
              + (f", flooder {rec['cpu_flooder']:.2f} s" if "cpu_flooder" in rec else ""))
    sq, sb = summary_ms(quiet["delivery"]), summary_ms(busy["delivery"])
    for p in ("p50", "p95", "p99"):
        ratios[p] = sb[p] / sq[p] if sq[p] else float("nan")
    ok = all(r <= args.target for r in ratios.values())
    print(f"  ratio flood/quiet delivery: p50 {ratios['p50']:.2f}x  p95 {ratios['p95']:.2f}x  p99 {ratios['p99']:.2f}x"
          f"  (target <= {args.target:g}x: {'MET' if ok else 'MISSED'})")
    c = flood.get("counts", {})
    wall = flood.get("wall_s") or float("nan")
    print(f"  flood: sent {c.get('sent', 0)} ({c.get('sent', 0) / wall:,.0f} msg/s over {wall:.1f} s), "
          f"acked {c.get('acked', 0)}, rate_limited {flood.get('errors', {}).get('rate_limited', 0)} "
          f"(retry_after {flood.get('retry_after_min')}..{flood.get('retry_after_max')} s), "
          f"other errors {({k: v for k, v in flood.get('errors', {}).items() if k != 'rate_limited'})}")
    closes = flood.get("closes", {})
    other_closes = {k: v for k, v in closes.items() if k != "4429"}
    print(f"  flood: closed with 4429: {closes.get('4429', 0)}; other closes {other_closes}; "
          f"connects {c.get('connects', 0)} (refused {c.get('connect_failures', 0)}); flooder CPU "
          f"{flood.get('cpu_s', float('nan')):.2f} s")
    missing = c.get("rate_limited_without_retry_after", 0)
    print(f"  rate_limited without retry_after: {missing}"
          + (f"  first: {flood['samples'].get('rate_limited_without_retry_after')}" if missing else ""))
    if flood.get("samples", {}).get("rate_limited"):
        print(f"  first rate_limited frame: {json.dumps(flood['samples']['rate_limited'])[:200]}")
    for key, sample in sorted(flood.get("samples", {}).items()):
        if key.startswith("error_") or key in ("connect_failure", "send_failure"):
            print(f"  flood sample {key}: {str(sample)[:200]}")
    bad_normal = quiet["errors"] + busy["errors"]
    if bad_normal:
        print(f"  NORMAL CONVERSATION GOT ERROR FRAMES: {len(bad_normal)}; first: {json.dumps(bad_normal[0])[:200]}")
        rc = 1
    if quiet["lost"] or busy["lost"]:
        print(f"  LOST or late: quiet {quiet['lost']}, flood {busy['lost']}")
        rc = 1
    if missing:
        rc = 1
    if flood_rc != 0 or not flood:
        print(f"  flood worker failed (exit {flood_rc}); see its log in {env.logdir}")
        rc = 1
    if problems:
        print(f"  server log warnings/errors: {len(problems)}; first: {problems[0]}")
    return rc


def limits_text(server_env: dict[str, str]) -> str:
    """The rate-limit settings the servers ran with (defaults from server/rules/limits.py)."""
    defaults = {"POMOC_RATE_USER_MESSAGES": "30/10s", "POMOC_RATE_SHOP_MESSAGES": "120/10s",
                "POMOC_RATE_AGENT_MESSAGES": "60/10s", "POMOC_RATE_SHOP_TICKETS": "50/1d",
                "POMOC_MAX_RATE_LIMITED": "50", "POMOC_MAX_USER_CONNECTIONS": "20"}
    return ", ".join(f"{k}={server_env[k]}" if server_env.get(k) else f"{k}={v} (default)"
                     for k, v in defaults.items())


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=5.0, help="normal conversation, msg/s (default %(default)s)")
    p.add_argument("--seconds", type=float, default=20.0, help="measured window per phase (default %(default)s)")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first (default %(default)s)")
    p.add_argument("--timeout", type=float, default=10.0, help="a delivery later than this is lost (default 10)")
    p.add_argument("--flood-rate", type=float, default=1000.0, help="flood target msg/s (default %(default)s)")
    p.add_argument("--flood-connections", type=int, default=8, help="flood connections (default %(default)s)")
    p.add_argument("--flood-users", type=int, default=4, help="S2 users behind them (default %(default)s)")
    p.add_argument("--flood-nodes", choices=("both", "A", "B"), default="both",
                   help="where the flood connects (default %(default)s; A is the normal customer's node)")
    p.add_argument("--ramp", type=float, default=2.0, help="flood seconds before measuring (default %(default)s)")
    p.add_argument("--target", type=float, default=2.0, help="max flood/quiet latency ratio (default %(default)s)")
    p.add_argument("--smoke", action="store_true", help="3 s per phase, 4 flood connections")
    p.add_argument("--flood-worker", metavar="CONFIG", help=argparse.SUPPRESS)
    add_service_args(p)
    return p.parse_args(argv)


if __name__ == "__main__":
    use_uvloop()
    ns = parse()
    if ns.flood_worker:
        sys.exit(worker_main(ns.flood_worker))
    sys.exit(asyncio.run(main(ns)))
