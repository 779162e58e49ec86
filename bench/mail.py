"""Mail delivery throughput: how many mails a minute `python -m server worker` sends.

    .venv/bin/python bench/mail.py                       # 5,000 mails, with 1 and then 2 workers
    .venv/bin/python bench/mail.py --mails 20000 --workers 1,2,4
    .venv/bin/python bench/mail.py --latency 50            # a server 50 ms away per mail
    .venv/bin/python bench/mail.py --smoke               # 300 mails, 2 workers, a few seconds

Steps: fresh PostgreSQL database + `python -m server migrate`; tickets seeded with COPY
(bench/_seed.py); a real SMTP server (aiosmtpd) in this process on a free loopback port
that accepts every mail (after `--latency` ms) and keeps its Message-ID. For each entry of `--workers`, `--mails`
due mail notifications (`resolved`, one per shop user, as the ticket store queues them) are
COPYed into `notifications`, then that many `python -m server worker` processes start with
`POMOC_SMTP_URL` pointing at the server and `POMOC_JOBS_INTERVAL=0.5`; the round ends when
every mail has arrived. Printed per round: mails per minute from the first mail to the
last (the delivery rate) and from the workers' start to the last mail (start-up included),
duplicates (Message-IDs seen twice), and the rows recorded `sent`.

Exit status 1 when something was *wrong* (a mail missing or sent twice, a row not recorded
sent, a worker failing); never because it was slow.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, Env, add_service_args, asyncpg_dsn, free_port, log  # noqa: E402
from _seed import Seeder, Shape  # noqa: E402

NOTIFICATION_COLS = ["key", "kind", "channel", "recipient", "lang", "ticket_id", "shop_id", "user_id", "data",
                     "created_at", "next_attempt_at", "attempts"]
_MESSAGE_ID = re.compile(rb"^Message-ID: (<[^>\r\n]+>)", re.MULTILINE | re.IGNORECASE)


class Counter:
    """The SMTP server's handler: counts mails and their Message-IDs, as they arrive."""

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency  # seconds each mail's "250" waits (a remote server's round trips)
        self.lock = threading.Condition()
        self.ids: list[bytes] = []
        self.first: float | None = None
        self.last: float | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.latency:
            await asyncio.sleep(self.latency)
        found = _MESSAGE_ID.search(envelope.original_content or envelope.content)
        now = time.perf_counter()
        with self.lock:
            self.ids.append(found.group(1) if found else b"?")
            self.first = self.first if self.first is not None else now
            self.last = now
            self.lock.notify_all()
        return "250 OK"

    def reset(self) -> None:
        with self.lock:
            self.ids, self.first, self.last = [], None, None

    def wait(self, count: int, timeout: float, alive: Any) -> bool:
        deadline = time.monotonic() + timeout
        with self.lock:
            while len(self.ids) < count:
                left = deadline - time.monotonic()
                if left <= 0 or not alive():
                    return False
                self.lock.wait(min(left, 1.0))
        return True


async def queue_mails(dsn: str, round_no: int, mails: int, tickets: int, shape: Shape, due: datetime) -> None:
    import asyncpg

    rows = []
    for i in range(mails):
        ticket = 1 + i % tickets
        shop = shape.shop_of(ticket)
        rows.append((f"bench:{round_no}:{i}", "resolved", "mail", f"u{shop}-{i}@bench.example", "pl", ticket,
                     f"s{shop}", f"u{shop}", json.dumps({"agent": "Bench"}), due, due, 0))
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table("notifications", records=rows, columns=NOTIFICATION_COLS)
    finally:
        await conn.close()


async def recorded(dsn: str, round_no: int) -> dict[str, int]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT coalesce(outcome, 'pending') AS outcome, count(*) AS n FROM notifications "
                                "WHERE key LIKE $1 GROUP BY 1", f"bench:{round_no}:%")
        return {r["outcome"]: int(r["n"]) for r in rows}
    finally:
        await conn.close()


def start_workers(env: Env, n: int, smtp_port: int, round_no: int) -> list[subprocess.Popen[bytes]]:
    procs = []
    for k in range(n):
        worker_env = {**env.server_env, "POMOC_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
                      "POMOC_MAIL_FROM": "Pomoc <no-reply@bench.example>", "POMOC_JOBS_INTERVAL": "0.5",
                      "POMOC_LOG_LEVEL": "WARNING"}
        out = open(env.logdir / f"worker-{round_no}-{k}.log", "wb")  # noqa: SIM115 - the child keeps it
        procs.append(subprocess.Popen([env.args.python, "-m", "server", "worker"], cwd=ROOT, env=worker_env,
                                      stdout=out, stderr=subprocess.STDOUT))
    return procs


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> list[int]:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(15))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes.append(proc.wait())
    return codes


async def main(args: argparse.Namespace) -> int:
    from aiosmtpd.controller import Controller

    if args.smoke:
        args.mails, args.workers, args.tickets = 300, "2", 20
    rounds = [int(w) for w in args.workers.split(",") if w.strip()]
    env = Env(args, "mail")
    counter = Counter(args.latency / 1000)
    port = free_port()
    controller = Controller(counter, hostname="127.0.0.1", port=port)
    results: list[dict[str, Any]] = []
    rc = 0
    try:
        await env.create()
        dsn = asyncpg_dsn(env.db_url)
        clock = datetime.fromisoformat(env.clock).astimezone(UTC)
        shape = Shape(tickets=args.tickets, per_ticket=2, closed_fraction=0.0)
        await Seeder(dsn, clock - timedelta(days=1), args.seed).seed(shape, log=log)
        controller.start()
        for round_no, workers in enumerate(rounds, 1):
            counter.reset()
            await queue_mails(dsn, round_no, args.mails, args.tickets, shape, clock - timedelta(minutes=1))
            log(f"[mail] round {round_no}: {args.mails:,} mails, {workers} worker(s) ...")
            started = time.perf_counter()
            procs = start_workers(env, workers, port, round_no)
            ok = await asyncio.to_thread(counter.wait, args.mails, args.timeout,
                                         lambda procs=procs: all(p.poll() is None for p in procs))
            ended = time.perf_counter()
            # Let the workers record the last rows, then stop them.
            deadline = time.monotonic() + 15
            while (await recorded(dsn, round_no)).get("sent", 0) < args.mails and time.monotonic() < deadline:  # noqa: ASYNC110, E501
                await asyncio.sleep(0.2)  # another process's last UPDATE, polled, bounded
            codes = stop_workers(procs)
            outcomes = await recorded(dsn, round_no)
            ids = list(counter.ids)
            first, last = counter.first or ended, counter.last or ended
            results.append({
                "round": round_no, "workers": workers, "received": len(ids), "unique": len(set(ids)),
                "rate": (len(ids) - 1) / (last - first) * 60 if len(ids) > 1 and last > first else float("nan"),
                "overall": len(ids) / (last - started) * 60 if ids else 0.0, "span": last - first,
                "total": last - started, "outcomes": outcomes, "codes": codes, "complete": ok,
            })
    finally:
        controller.stop()
        await env.cleanup()

    print(f"mail: {args.mails:,} due mail notifications per round over {args.tickets} tickets, delivered by "
          f"`python -m server worker` processes to an aiosmtpd server on loopback answering each mail after "
          f"{args.latency:g} ms (POMOC_JOBS_INTERVAL=0.5; batches of 50 shared over 4 SMTP connections)")
    for r in results:
        dup = r["received"] - r["unique"]
        print(f"  {r['workers']} worker(s): delivered {r['unique']}/{args.mails}; duplicates: {dup}; "
              f"recorded sent: {r['outcomes'].get('sent', 0)}; "
              f"mails/minute: {r['rate']:,.0f} (first to last mail, {r['span']:.1f} s), "
              f"{r['overall']:,.0f} including start-up ({r['total']:.1f} s)")
        if not r["complete"] or r["unique"] != args.mails or dup or r["outcomes"].get("sent", 0) != args.mails:
            print(f"  WRONG: round {r['round']}: received {r['received']}, unique {r['unique']}, "
                  f"outcomes {r['outcomes']}, worker exit codes {r['codes']}")
            rc = 1
    problems = []
    for path in sorted(env.logdir.glob("worker-*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if '"level": "error"' in line or "Traceback" in line:
                problems.append(f"{path.name}: {line[:300]}")
    if problems:
        print("  worker problems:\n    " + "\n    ".join(problems[:10]))
        rc = 1
    print(f"  target: all {args.mails} mails delivered once with each worker count")
    return rc


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mails", type=int, default=5000, help="mails per round (default %(default)s)")
    p.add_argument("--workers", default="1,2", help="worker processes per round, comma-separated (default %(default)s)")
    p.add_argument("--tickets", type=int, default=100, help="tickets the mails are about (default %(default)s)")
    p.add_argument("--latency", type=float, default=0.0,
                   help="milliseconds the SMTP server waits before accepting each mail, like a remote server's "
                        "round trips (default %(default)s)")
    p.add_argument("--timeout", type=float, default=600, help="seconds a round may take (default %(default)s)")
    p.add_argument("--smoke", action="store_true", help="300 mails, 2 workers")
    add_service_args(p)
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
