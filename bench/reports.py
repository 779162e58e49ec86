"""The lead's report for a month on a big database: p50/p99 of `ReportStore.report`
(the SQL behind `GET /api/reports`) over one month of tickets.

    .venv/bin/python bench/reports.py                      # 200,000 messages (CI-sized)
    .venv/bin/python bench/reports.py --messages 10000000  # the 10-million-message database
    .venv/bin/python bench/reports.py --smoke              # a few seconds

Steps: fresh PostgreSQL database + `python -m server migrate`; the bigdb shape
(`bench/_seed.py`: ticket i opened i minutes before the clock, `--messages` in
`--tickets` tickets, 100 a ticket by default; loaded with COPY, the messages' indexes
rebuilt); then the report facts the server stores as events happen are filled in for
every ticket by SQL (departments, severities, plans, first responders, working
seconds to the first response and resolution, next-response steps, off-hours holds),
ratings for a third of the tickets and deflections; VACUUM ANALYZE; then the report
for the calendar month before the clock's month (fully inside the data when there are
enough tickets) `--runs` times, in process, after `--warmup` runs.

The report reads only `tickets` (by `ix_tickets_created`), `ratings` and
`help_deflections`: the messages table's size does not enter its plan — the point
of storing the facts at event time.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import Env, add_service_args, asyncpg_dsn, fmt_ms, log, sqlalchemy_url, summary_ms  # noqa: E402
from _seed import Seeder, Shape  # noqa: E402

# Deterministic facts from the ticket id (no random state to carry between statements).
FACTS = """
UPDATE tickets SET
  department = (ARRAY['platnosci', 'techniczny', 'zamowienia', 'konto', NULL])[1 + id % 5],
  severity = (ARRAY['critical', 'major', 'minor', 'question', 'suggestion'])[1 + (id / 7) % 5],
  plan = (ARRAY['standard', 'standard', 'priority', 'trial'])[1 + (id / 3) % 4],
  first_responder = CASE WHEN id % 10 = 0 THEN NULL ELSE 'agent' || (id % 12) END,
  first_response_at = CASE WHEN id % 10 = 0 THEN NULL ELSE created_at + make_interval(secs => 60 + id % 36000) END,
  first_response_due_at = created_at + interval '8 hours',
  first_response_s = CASE WHEN id % 10 = 0 THEN NULL ELSE 60 + id % 36000 END,
  next_responses = id % 4, next_response_s = (id % 4) * (300 + id % 7200), next_response_breaches = (id % 9) / 7,
  resolution_s = CASE WHEN id % 3 = 0 THEN NULL ELSE 3600 + id % 400000 END,
  held_s = CASE WHEN id % 6 = 0 THEN 3600 + id % 50000 END,
  sla_due_at = CASE WHEN id % 10 = 0 THEN created_at + interval '8 hours' END
"""
RATINGS = """
INSERT INTO ratings (ticket_id, shop_id, user_id, solved, score, comment, created_at)
SELECT id, shop_id, created_by, id % 11 <> 0, CASE WHEN id % 11 <> 0 THEN 1 + id % 5 END, NULL,
       created_at + interval '2 days'
FROM tickets WHERE id % 3 = 1
"""
DEFLECTIONS = """
INSERT INTO help_deflections (article_id, shop_id, query, created_at)
SELECT 'article-' || (g % 40), 's' || (g % 1000), 'jak zmienić hasło', $1::timestamptz - make_interval(mins => g * 7)
FROM generate_series(1, $2::int) AS g
"""


def previous_month(clock: str) -> tuple[str, str]:
    now = datetime.fromisoformat(clock)
    first_this = now.date().replace(day=1)
    last_prev = first_this - timedelta(days=1)
    return last_prev.replace(day=1).isoformat(), last_prev.isoformat()


async def main(args: argparse.Namespace) -> int:
    import asyncpg

    from server.rules.reports import parse_period
    from server.settings import Settings
    from server.store.db import create_engine
    from server.store.reports import ReportStore

    if args.smoke:
        args.messages, args.tickets, args.runs, args.warmup = 4000, 400, 5, 1
    tickets = args.tickets or max(1, args.messages // 100)
    per = max(1, args.messages // tickets)
    env = Env(args, "reports")
    first, last = args.period or previous_month(env.clock)
    log(f"[reports] database {env.dbname}; {tickets:,} tickets x {per} = {tickets * per:,} messages; "
        f"clock {env.clock}; report {first}..{last}")
    rc = 0
    try:
        await env.create()
        dsn = asyncpg_dsn(env.db_url)
        t0 = time.perf_counter()
        load = await Seeder(dsn, datetime.fromisoformat(env.clock), seed=args.seed).seed(
            Shape(tickets=tickets, per_ticket=per), bulk=True, log=log)
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(FACTS)
            await conn.execute(RATINGS)
            await conn.execute(DEFLECTIONS, datetime.fromisoformat(env.clock), max(1, tickets // 10))
            await conn.execute("VACUUM ANALYZE tickets, ratings, help_deflections")
            in_period = await conn.fetchval(
                "SELECT count(*) FROM tickets WHERE created_at >= $1 AND created_at < $2",
                *(lambda p: (p.start, p.end))(parse_period(first, last, Settings().timezone)))
        finally:
            await conn.close()
        log(f"[reports] loaded in {time.perf_counter() - t0:.1f} s (messages {load.get('total_s', 0):.1f} s); "
            f"{in_period:,} tickets opened in the period")

        settings = Settings(database_url=sqlalchemy_url(env.db_url))
        engine = create_engine(settings)
        store = ReportStore(engine)
        period = parse_period(first, last, settings.timezone)
        now = datetime.fromisoformat(env.clock)
        times: list[float] = []
        try:
            for i in range(args.warmup + args.runs):
                t = time.perf_counter()
                report = await store.report(period, now)
                if i >= args.warmup:
                    times.append(time.perf_counter() - t)
        finally:
            await engine.dispose()
        total = report["groups"]["total"][0]
    finally:
        await env.cleanup()
    s = summary_ms(times)
    print(f"reports: {tickets * per:,} messages in {tickets:,} tickets; a month ({first}..{last}, "
          f"{in_period:,} tickets opened) on PostgreSQL, in process")
    print(f"  report  {fmt_ms(s)}")
    print(f"  total: opened {total['tickets_opened']:,}, "
          f"first response median {total['first_response']['median_s']} s, "
          f"SLA met {total['sla']['met_pct']} %, CSAT {total['csat']['count']:,} ratings")
    print(f"  target: p50 <= 1000 ms: {'MET' if s['p50'] <= 1000 else 'MISSED'}")
    return rc


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=200_000, help="messages in the database (default %(default)s)")
    p.add_argument("--tickets", type=int, default=0, help="tickets (default messages/100)")
    p.add_argument("--runs", type=int, default=20, help="measured reports (default %(default)s)")
    p.add_argument("--warmup", type=int, default=3, help="unmeasured reports first (default %(default)s)")
    p.add_argument("--period", nargs=2, metavar=("FROM", "TO"), help="the dates to report (default: last month)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    add_service_args(p)
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
