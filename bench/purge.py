"""Retention purge throughput: `python -m server purge` on a database full of old
closed tickets.

    .venv/bin/python bench/purge.py                       # 1,000,000 messages to purge
    .venv/bin/python bench/purge.py --messages 200000 --per-ticket 20
    .venv/bin/python bench/purge.py --smoke               # 20,000 messages, a few seconds

Steps: fresh PostgreSQL database + `python -m server migrate`; fill it with COPY
(bench/_seed.py, the messages table's indexes dropped during the load and rebuilt):

- "old": closed tickets whose `closed_at` is `--age` (120) days before `--at` (past
  the 90-day default retention), `--per-ticket` (100) messages each, 4 tickets per
  shop, plus one old closed ticket with `--big-ticket` (25,000) messages, bigger than
  the purge batch (POMOC_PURGE_BATCH, default 10,000): together `--messages`;
- "recent": `--recent` (20) tickets closed 10-20 days ago (inside retention) and
  `--open` (20) old tickets that are still open: both must survive.

A statement-level trigger on `messages` (transition table; `--no-observe` leaves it
out) records every DELETE's row count, to show that the batches are bounded. Then
`python -m server purge --dry-run --at <at>` and `python -m server purge --at <at>`
run as subprocesses with the servers' environment; the purge is timed (wall time of
the whole command, interpreter start included, and the span from its first to its
last DELETE). Printed: messages/s both ways (target >= 50,000 msg/s), the dry run's
count vs the purge's `deleted_messages`, the largest single DELETE, and whether the
old rows are all gone and the recent/open ones all remain.

Exit status 1 when something was *wrong* (rows left behind or lost, counts differ,
a command failed); never because it was slow.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, Env, add_service_args, asyncpg_dsn, log  # noqa: E402
from _seed import Seeder, Shape  # noqa: E402

OBSERVE_SQL = """
CREATE TABLE pbench_deletes (n bigint NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE FUNCTION pbench_count_deletes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO pbench_deletes (n) SELECT count(*) FROM pbench_old_rows;
  RETURN NULL;
END $$;
CREATE TRIGGER pbench_count_deletes AFTER DELETE ON messages
  REFERENCING OLD TABLE AS pbench_old_rows FOR EACH STATEMENT EXECUTE FUNCTION pbench_count_deletes();
"""


def run_purge(env: Env, extra_env: dict[str, str], at: str, dry_run: bool,
              mem_limit_gb: float) -> dict[str, Any]:
    """One `python -m server purge` as a subprocess (address space capped so a runaway
    purge fails with MemoryError instead of waking the machine's OOM killer)."""
    cmd = [env.args.python, "-m", "server", "purge", "--at", at] + (["--dry-run"] if dry_run else [])
    log_path = env.logdir / ("purge-dry-run.log" if dry_run else "purge.log")
    limit = int(mem_limit_gb * 2**30) if mem_limit_gb > 0 else None

    def cap() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    t0 = time.perf_counter()
    with open(log_path, "wb") as out, open(str(log_path) + ".stderr", "wb") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**env.server_env, **extra_env}, stdout=out, stderr=err,
                                preexec_fn=cap)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    text = log_path.read_text(errors="replace")
    result: dict[str, Any] = {"wall": wall, "rc": proc.returncode, "maxrss_mb": usage.ru_maxrss / 1024,
                              "log": str(log_path), "summary": None}
    for line in reversed(text.splitlines()):
        if line.startswith("{") and '"dry_run"' in line:
            result["summary"] = json.loads(line)
            break
    if proc.returncode != 0 or result["summary"] is None:
        tail = Path(str(log_path) + ".stderr").read_text(errors="replace").strip().splitlines()
        result["error"] = " | ".join(tail[-3:])[-600:] if tail else "(no output)"
    return result


async def main(args: argparse.Namespace) -> int:
    import asyncpg

    if args.smoke:
        args.messages, args.big_ticket, args.recent, args.open = 20_000, 2_500, 4, 4
        args.batch = args.batch or 1000
    at = datetime.fromisoformat(args.at).astimezone(UTC) if args.at else datetime.now(UTC).replace(microsecond=0)
    at_iso = at.isoformat()
    per = args.per_ticket
    big = args.big_ticket if args.big_ticket > per else 0
    n_old = max(1, (args.messages - big) // per)
    expected = n_old * per + big
    env = Env(args, "purge")
    extra_env = {"POMOC_ATTACHMENTS_DIR": tempfile.mkdtemp(prefix="pbench-purge-files-")}
    if args.batch:
        extra_env["POMOC_PURGE_BATCH"] = str(args.batch)
    batch = int(extra_env.get("POMOC_PURGE_BATCH") or env.server_env.get("POMOC_PURGE_BATCH") or 10_000)
    log(f"[purge] database {env.dbname}; {expected:,} old messages ({n_old:,} tickets x {per}"
        f"{f' + 1 x {big:,}' if big else ''}), {args.recent} recent + {args.open} open tickets; at {at_iso}")
    rc = 0
    res: dict[str, Any] = {}
    try:
        await env.create()
        dsn = asyncpg_dsn(env.db_url)
        old_base = at - timedelta(days=args.age)
        t0 = time.perf_counter()
        tid = 1
        groups: dict[str, tuple[int, int, int]] = {}  # name -> (first ticket, tickets, messages per ticket)
        await Seeder(dsn, old_base, args.seed).seed(
            Shape(tickets=n_old, per_ticket=per, tickets_per_shop=args.tickets_per_shop, closed_fraction=1.0,
                  first_ticket=tid), bulk=n_old * per >= 200_000,
            log=log)
        groups["old"] = (tid, n_old, per)
        tid += n_old
        # Keep shops whole (4 tickets each) so a shop never mixes groups.
        tid = ((tid - 1 + 3) // 4) * 4 + 1
        await Seeder(dsn, at - timedelta(days=10), args.seed).seed(
            Shape(tickets=args.recent, per_ticket=per, closed_fraction=1.0, first_ticket=tid), log=log)
        groups["recent"] = (tid, args.recent, per)
        tid = ((tid + args.recent - 1 + 3) // 4) * 4 + 1
        await Seeder(dsn, old_base, args.seed).seed(
            Shape(tickets=args.open, per_ticket=per, closed_fraction=0.0, first_ticket=tid), log=log)
        groups["open"] = (tid, args.open, per)
        tid = ((tid + args.open - 1 + 3) // 4) * 4 + 1
        if big:
            # Its message ids ((tid-1)*big + seq) lie above every id seeded before.
            await Seeder(dsn, old_base, args.seed).seed(
                Shape(tickets=1, per_ticket=big, closed_fraction=1.0, first_ticket=tid), log=log)
            groups["big"] = (tid, 1, big)
        seed_s = time.perf_counter() - t0

        conn = await asyncpg.connect(dsn)
        try:
            total_msgs = await conn.fetchval("SELECT count(*) FROM messages")
            if args.observe:
                await conn.execute(OBSERVE_SQL)
        finally:
            await conn.close()
        log(f"[purge] seeded {total_msgs:,} messages in {seed_s:.1f} s; dry run ...")

        dry_run = run_purge(env, extra_env, at_iso, True, args.mem_limit)
        if dry_run["summary"] is None:
            raise RuntimeError(f"purge --dry-run failed (exit {dry_run['rc']}): {dry_run.get('error')}")
        dry = dry_run["summary"]
        log(f"[purge] dry run: {dry['tickets']} tickets, {dry['messages']:,} messages ({dry_run['wall']:.1f} s); "
            "purge ...")
        purge_run = run_purge(env, extra_env, at_iso, False, args.mem_limit)
        real = purge_run["summary"] or {}
        log(f"[purge] purge: exit {purge_run['rc']}, {real.get('deleted_messages')} messages in "
            f"{purge_run['wall']:.1f} s, max RSS {purge_run['maxrss_mb']:.0f} MB")

        conn = await asyncpg.connect(dsn)
        try:
            left: dict[str, tuple[int, int, int]] = {}
            for name, (first, count, _) in groups.items():
                last = first + count - 1
                left[name] = (
                    await conn.fetchval("SELECT count(*) FROM tickets WHERE id BETWEEN $1 AND $2", first, last),
                    await conn.fetchval("SELECT count(*) FROM messages WHERE ticket_id BETWEEN $1 AND $2", first, last),
                    await conn.fetchval("SELECT count(*) FROM read_cursors WHERE ticket_id BETWEEN $1 AND $2",
                                        first, last),
                )
            deletes = None
            if args.observe:
                deletes = await conn.fetchrow(
                    "SELECT count(*) AS statements, coalesce(max(n), 0) AS largest, "
                    "count(*) FILTER (WHERE n > 0) AS nonempty, coalesce(sum(n), 0)::bigint AS rows, "
                    "extract(epoch FROM max(at) - min(at) FILTER (WHERE n > 0)) AS span FROM pbench_deletes")
        finally:
            await conn.close()
        res = {"dry": dry, "dry_run": dry_run, "real": real, "run": purge_run, "left": left, "deletes": deletes,
               "seed_s": seed_s, "total": total_msgs}
    finally:
        await env.cleanup()

    dry, real, left, deletes, run = res["dry"], res["real"], res["left"], res["deletes"], res["run"]
    deleted = int(real.get("deleted_messages", -1))
    shops = -(-n_old // args.tickets_per_shop)
    print(f"purge: {res['total']:,} messages seeded with COPY in {res['seed_s']:.1f} s; to purge: {expected:,} "
          f"({n_old:,} closed tickets x {per}{f' + one of {big:,}' if big else ''}, {args.tickets_per_shop} tickets "
          f"per shop = {shops:,} shops/customers, closed {args.age} days before --at {at_iso}); to keep: "
          f"{args.recent} tickets closed 10-20 days ago + {args.open} old open tickets; "
          f"POMOC_RETENTION={env.server_env.get('POMOC_RETENTION') or '90d (default)'}, POMOC_PURGE_BATCH={batch}"
          f"{'' if args.batch or env.server_env.get('POMOC_PURGE_BATCH') else ' (default)'}")
    print(f"  dry run: {dry['tickets']:,} tickets, {dry['messages']:,} messages ({res['dry_run']['wall']:.1f} s, "
          f"max RSS {res['dry_run']['maxrss_mb']:.0f} MB)")
    if run["rc"] == 0 and real:
        print(f"  purge:   {real['tickets']:,} tickets, deleted_messages {deleted:,} in {run['wall']:.2f} s wall "
              f"(whole command) = {deleted / run['wall']:,.0f} msg/s (target >= 50,000: "
              f"{'MET' if deleted / run['wall'] >= 50_000 else 'MISSED'}); max RSS {run['maxrss_mb']:.0f} MB")
    else:
        print(f"  purge:   FAILED: exit {run['rc']} after {run['wall']:.1f} s, max RSS {run['maxrss_mb']:.0f} MB "
              f"(address space capped at {args.mem_limit:g} GB); last stderr: {run.get('error')}")
    if deletes is not None and deletes["span"]:
        span = float(deletes["span"])
        print(f"  DELETE phase (first to last non-empty DELETE on messages): {span:.2f} s = "
              f"{int(deletes['rows']) / span:,.0f} msg/s")
    if deletes is not None:
        print(f"  DELETE statements on messages: {deletes['statements']:,} ({deletes['nonempty']:,} non-empty), "
              f"rows {deletes['rows']:,}; largest single DELETE: {deletes['largest']:,} rows (batch {batch:,})")
    else:
        print("  largest single DELETE: not observed (--no-observe)")
    same = dry["messages"] == deleted == expected
    print(f"  dry run == purge == seeded old: {dry['messages']:,} / {deleted:,} / {expected:,}: "
          f"{'yes' if same else 'NO'}")
    for name in left:
        t, m, c = left[name]
        print(f"  left afterwards, {name}: {t} tickets, {m:,} messages, {c} read cursors")
    gone = all(left[n] == (0, 0, 0) for n in ("old", "big") if n in left)
    kept = all(left[n][0] == cnt and left[n][1] == cnt * pt
               for n, (_, cnt, pt) in (("recent", (0, args.recent, per)), ("open", (0, args.open, per))))
    print(f"  old rows all gone: {'yes' if gone else 'NO'}; recent and open rows all kept: {'yes' if kept else 'NO'}")
    if not (same and gone and kept) or run["rc"] != 0:
        rc = 1
    if deletes is not None and deletes["largest"] > batch:
        print(f"  UNBOUNDED: a DELETE removed {deletes['largest']:,} rows > batch {batch:,}")
    return rc


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=1_000_000, help="old messages to purge (default %(default)s)")
    p.add_argument("--per-ticket", type=int, default=100, help="messages per old ticket (default %(default)s)")
    p.add_argument("--big-ticket", type=int, default=25_000,
                   help="one old ticket this big, > the batch (default %(default)s; 0: none)")
    p.add_argument("--recent", type=int, default=20, help="closed tickets inside retention (default %(default)s)")
    p.add_argument("--open", type=int, default=20, help="old tickets still open (default %(default)s)")
    p.add_argument("--tickets-per-shop", type=int, default=4,
                   help="old tickets per shop (one customer each; default %(default)s, like bigdb.py)")
    p.add_argument("--mem-limit", type=float, default=4.0,
                   help="address-space cap of the purge commands in GB (default %(default)s; 0: none)")
    p.add_argument("--age", type=int, default=120, help="days the old tickets are closed (default %(default)s)")
    p.add_argument("--at", help="the purge's --at (ISO 8601; default: now)")
    p.add_argument("--batch", type=int, default=0, help="POMOC_PURGE_BATCH (default: the server's, 10000)")
    p.add_argument("--no-observe", dest="observe", action="store_false",
                   help="no DELETE-counting trigger on messages")
    p.add_argument("--smoke", action="store_true", help="20,000 messages, batch 1000")
    add_service_args(p)
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
