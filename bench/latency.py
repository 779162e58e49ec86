"""Cross-node delivery latency of a normal conversation at a low rate.

    .venv/bin/python bench/latency.py                   # 20 tickets, 50 msg/s, 20 s
    .venv/bin/python bench/latency.py --rate 200 --seconds 30
    .venv/bin/python bench/latency.py --smoke           # a few seconds

Servers A and B on a fresh PostgreSQL database and real Redis (private prefix).
`--tickets` customers on A open a ticket each (`open_ticket`, the real path); one
agent per ticket on B follows it (`feed: false`). Then, open loop for `--seconds`
at `--rate` messages/s in total, round-robin over the tickets, alternating
direction: the customer writes (A -> Redis -> B -> agent), the agent answers
(B -> Redis -> A -> customer). Every message is stored before it is delivered.

Printed, per direction, p50/p95/p99/max of:
  - delivery: send on one node -> `message` frame on the other side;
  - ack: send -> `ack` to the sender (the commit).
Sender and receiver are in this one process (same monotonic clock).
"""

from __future__ import annotations

import argparse
import asyncio
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


async def main(args: argparse.Namespace) -> int:
    if args.smoke:
        args.tickets, args.rate, args.seconds, args.warmup = 4, 40, 2.0, 0.5
    env = Env(args, "latency")
    log(f"[latency] database {env.dbname}; {args.tickets} tickets, {args.rate} msg/s for {args.seconds} s; "
        f"clock {env.clock}")
    sent: dict[str, tuple[float, str]] = {}           # client_id -> (t_send, direction)
    delivered: dict[str, list[float]] = {"c2a": [], "a2c": []}
    acked: dict[str, list[float]] = {"c2a": [], "a2c": []}
    errors: list[str] = []
    recording = False
    rc = 0
    try:
        await env.create()
        a = env.server("A").start()
        b = env.server("B").start()

        def on_frame(frame: dict[str, Any], t: float) -> None:
            kind = frame.get("type")
            if kind == "message":
                entry = sent.get(frame.get("client_id", ""))
                if entry is not None and recording:
                    delivered[entry[1]].append(t - entry[0])
            elif kind == "ack":
                entry = sent.get(frame.get("client_id", ""))
                if entry is not None and recording:
                    acked[entry[1]].append(t - entry[0])
            elif kind == "error":
                errors.append(str(frame)[:200])

        customers: list[Client] = []
        tickets: list[int] = []
        for i in range(args.tickets):
            c = Client(a.url, on_frame=on_frame)
            await c.connect(mint(env.secret, "customer", f"lat-user-{i}", shop=f"lat-{i}"))
            reply = await c.request({"type": "open_ticket", "title": f"Latency {i}", "body": "Hello, a question.",
                                     "severity": "question", "client_id": str(uuid.uuid4())})
            tickets.append(int(reply["ticket"]["id"]))
            customers.append(c)
        agents: list[Client] = []
        for i, tid in enumerate(tickets):
            ag = Client(b.url, on_frame=on_frame)
            await ag.connect(mint(env.secret, "agent", f"lat-agent-{i}", name=f"Agent {i}"), feed=False)
            await ag.request({"type": "follow", "ticket": tid})
            agents.append(ag)

        async def run(seconds: float) -> int:
            count = 0
            async for i in paced(args.rate, seconds):
                count = i + 1
                k = i % len(tickets)
                direction = "c2a" if (i // len(tickets)) % 2 == 0 else "a2c"
                sender = customers[k] if direction == "c2a" else agents[k]
                cid = f"lat:{i}:{uuid.uuid4().hex[:8]}"
                sent[cid] = (time.perf_counter(), direction)
                await sender.send({"type": "send", "ticket": tickets[k], "client_id": cid,
                                   "body": f"{cid} Hi, my order #48213 has not arrived yet, can you check?"})
            return count

        await run(args.warmup)
        await asyncio.sleep(0.5)
        sent.clear()
        recording = True
        cpu0 = (cpu_seconds(), proc_cpu_seconds(a.pid), proc_cpu_seconds(b.pid))
        count = await run(args.seconds)
        deadline = time.perf_counter() + 10
        while (len(delivered["c2a"]) + len(delivered["a2c"]) < count  # noqa: ASYNC110
               and time.perf_counter() < deadline):
            await asyncio.sleep(0.05)  # bounded drain of the last deliveries
        cpu1 = (cpu_seconds(), proc_cpu_seconds(a.pid), proc_cpu_seconds(b.pid))
        for cl in customers + agents:
            await cl.close()
        problems = [p for s in env.servers for p in s.log_problems()]
    finally:
        await env.cleanup()

    got = len(delivered["c2a"]) + len(delivered["a2c"])
    print(f"latency: {args.tickets} tickets (customer on A, agent on B), {args.rate} msg/s for {args.seconds:g} s, "
          f"alternating directions; PostgreSQL + Redis")
    for direction, label in (("c2a", "customer(A) -> agent(B)"), ("a2c", "agent(B) -> customer(A)")):
        print(f"  delivery {label}: {fmt_ms(summary_ms(delivered[direction]))}")
        print(f"  ack      {label}: {fmt_ms(summary_ms(acked[direction]))}")
    both = summary_ms(delivered["c2a"] + delivered["a2c"])
    print(f"  delivery, both directions:      {fmt_ms(both)}")
    print(f"  sent {count}, delivered {got}, error frames {len(errors)}; CPU: A {cpu1[1] - cpu0[1]:.2f} s, "
          f"B {cpu1[2] - cpu0[2]:.2f} s, client {cpu1[0] - cpu0[0]:.2f} s "
          f"(A+B {1e6 * (cpu1[1] - cpu0[1] + cpu1[2] - cpu0[2]) / max(1, got):.0f} us/msg)")
    if errors:
        print(f"  first error frame: {errors[0]}")
        rc = 1
    if got < count:
        print(f"  LOST or late: {count - got} messages not delivered within 10 s")
        rc = 1
    if problems:
        print(f"  server log warnings/errors: {len(problems)}; first: {problems[0]}")
    return rc


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tickets", type=int, default=20, help="conversations (default %(default)s)")
    p.add_argument("--rate", type=float, default=50.0, help="messages/s in total (default %(default)s)")
    p.add_argument("--seconds", type=float, default=20.0, help="measured window (default %(default)s)")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first (default %(default)s)")
    p.add_argument("--smoke", action="store_true", help="4 tickets, 2 s")
    add_service_args(p)
    return p.parse_args(argv)


if __name__ == "__main__":
    use_uvloop()
    sys.exit(asyncio.run(main(parse())))
