"""Sample what Pomoc's PostgreSQL sessions are doing (pg_stat_activity), to tell CPU
from lock waits from WAL flushes during a load.

    .venv/bin/python bench/pgwait.py [--seconds 15] [--every 0.1] [--pg URL] [--app pomoc] [--db-like 'pomoc_bench%']

Prints, per (state, wait_event_type:wait_event), the share of session samples, and
the average number of pomoc sessions that were active (not idle) per sample.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_PG, asyncpg_dsn  # noqa: E402


async def main(a: argparse.Namespace) -> None:
    import asyncpg

    conn = await asyncpg.connect(asyncpg_dsn(a.pg))
    seen: Counter[str] = Counter()
    active = 0
    samples = 0
    end = time.monotonic() + a.seconds
    try:
        while time.monotonic() < end:
            rows = await conn.fetch(
                "SELECT state, coalesce(wait_event_type, '-') AS t, coalesce(wait_event, '-') AS e, "
                "left(query, 40) AS q FROM pg_stat_activity WHERE application_name = $1 AND datname LIKE $2",
                a.app, a.db_like)
            samples += 1
            for r in rows:
                if r["state"] == "idle":
                    seen["idle"] += 1
                    continue
                active += 1
                what = "CPU (no wait)" if r["t"] == "-" else f"{r['t']}:{r['e']}"
                seen[f"{r['state']:<20} {what:<28} {r['q'].split()[0] if r['q'] else ''}"] += 1
            await asyncio.sleep(a.every)
    finally:
        await conn.close()
    total = sum(seen.values()) or 1
    print(f"pg_stat_activity, application_name={a.app!r}: {samples} samples, "
          f"{active / max(1, samples):.1f} sessions active on average")
    for what, n in seen.most_common(15):
        print(f"  {100 * n / total:5.1f}%  {what}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--every", type=float, default=0.1)
    p.add_argument("--pg", default=DEFAULT_PG)
    p.add_argument("--app", default="pomoc")
    p.add_argument("--db-like", default="pomoc_bench%", help="databases to watch (LIKE pattern; default %(default)s, "
                   "the peer harness's; other tests on the same PostgreSQL are left out)")
    asyncio.run(main(p.parse_args()))
