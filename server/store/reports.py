"""The lead's reports in SQL: every figure aggregated in the database, over the tickets
opened in a period (the range scan of `ix_tickets_created`), the ratings given in it
(`ix_ratings_created`) and the deflections recorded in it
(`ix_help_deflections_created`).

Per group (the total, and by department, severity, plan and agent) one aggregate
statement counts and sums; one more ranks the three timed figures with window
functions and picks the nearest-rank median and p90 (`server.rules.reports`) —
plain SQL both SQLite and PostgreSQL run the same way, never a row per ticket back
to Python. The durations are working seconds stored when each event happened
(`first_response_s`, `next_response_s`, `resolution_s`): no calendar runs here.
What the figures mean is `server.rules.reports`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, and_, case, cast, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from server.rules.plans import DEFAULT_PLAN
from server.rules.reports import DIMENSIONS, Period, pct, sla_figures
from server.rules.satisfaction import SATISFIED
from server.store.models import help_deflections, ratings, tickets

_T = tickets.c


def _key(dimension: str) -> ColumnElement[Any] | None:
    if dimension == "department":
        return _T.department
    if dimension == "severity":
        return _T.severity
    if dimension == "plan":
        # A literal, not a parameter: PostgreSQL must see the same expression in GROUP BY.
        return func.coalesce(_T.plan, literal_column(f"'{DEFAULT_PLAN}'"))
    if dimension == "agent":
        return _T.first_responder
    return None  # the total


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


# The timed figures: a ticket's first response, its mean next-response step, its resolution.
_NEXT_MEAN = cast(_T.next_response_s, Float) / func.nullif(_T.next_responses, 0)
_TIMED = {"first_response": _T.first_response_s, "next_response": _NEXT_MEAN, "resolution": _T.resolution_s}


class ReportStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def report(self, period: Period, now: datetime) -> dict[str, Any]:
        """The report for the tickets opened in `period`; `now` decides which running
        deadlines are already breached."""
        groups: dict[str, list[dict[str, Any]]] = {}
        async with self.engine.connect() as conn:
            for dimension in ("total", *DIMENSIONS):
                groups[dimension] = await self._group(conn, dimension, period, now)
            deflections = (await conn.execute(select(func.count()).select_from(help_deflections).where(and_(
                help_deflections.c.created_at >= period.start, help_deflections.c.created_at < period.end)))
            ).scalar_one()
        return {"from": period.first.isoformat(), "to": period.last.isoformat(), "days": period.days,
                "start": period.start.isoformat(), "end": period.end.isoformat(), "generated_at": now.isoformat(),
                "deflections": int(deflections), "groups": groups}

    async def _group(self, conn: AsyncConnection, dimension: str, period: Period, now: datetime
                     ) -> list[dict[str, Any]]:
        key = _key(dimension)
        label = key.label("k") if key is not None else literal_column("NULL").label("k")
        opened = and_(_T.created_at >= period.start, _T.created_at < period.end)
        due, answered = _T.first_response_due_at, _T.first_response_at
        counts = select(
            label, func.count(), func.count(answered),
            _count_if(and_(answered.is_not(None), due.is_not(None), answered <= due)),
            _count_if(and_(answered.is_not(None), due.is_not(None), answered > due)),
            _count_if(and_(answered.is_(None), due.is_not(None), due < now)),
            func.coalesce(func.sum(_T.next_responses), 0), func.coalesce(func.sum(_T.next_response_breaches), 0),
            # A next-response step running past its deadline now.
            _count_if(and_(answered.is_not(None), _T.sla_due_at.is_not(None), _T.sla_due_at < now)),
            _count_if(_T.next_responses > 0), func.count(_T.resolution_s),
            func.count(_T.held_s), func.coalesce(func.sum(_T.held_s), 0), func.max(_T.held_s),
        ).where(opened)
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            # percentile_disc(p) is the nearest rank (the first value whose cumulative
            # share reaches p): in the same grouped pass, sorted in memory per group.
            counts = counts.add_columns(*(func.percentile_disc(p / 100).within_group(v)
                                          for v in _TIMED.values() for p in (50, 90)))
        if key is not None:
            counts = counts.group_by(key)
        rows: dict[Any, dict[str, Any]] = {}
        for r in await conn.execute(counts):
            held, held_total = int(r[11]), int(r[12])
            rows[r[0]] = {
                "key": r[0], "tickets_opened": int(r[1]),
                "first_response": {"count": int(r[2]), "median_s": None, "p90_s": None},
                "next_response": {"tickets": int(r[9]), "steps": int(r[6]), "median_s": None, "p90_s": None},
                "resolution": {"count": int(r[10]), "median_s": None, "p90_s": None},
                "sla": sla_figures(int(r[3]), int(r[4]), int(r[5]), int(r[6]), int(r[7]), int(r[8])),
                "held": {"tickets": held, "total_s": held_total,
                         "mean_s": round(held_total / held) if held else None,
                         "max_s": None if r[13] is None else int(r[13])},
                "csat": {"count": 0, "average": None, "satisfied_pct": None, "not_solved": 0},
            }
            if postgres:
                _timed(rows[r[0]], r[14:])
        if key is None and not rows:
            rows[None] = _empty(None)
        if not postgres:
            await self._percentiles(conn, key, opened, rows)
        await self._csat(conn, key, period, rows)
        return sorted(rows.values(), key=lambda row: (row["key"] is None, str(row["key"] or "")))

    async def _percentiles(self, conn: AsyncConnection, key: ColumnElement[Any] | None, opened: Any,
                           rows: dict[Any, dict[str, Any]]) -> None:
        """SQLite: the nearest-rank median and p90 of each timed figure per group, by
        ranking the period's tickets by each figure within their group (NULLs last)."""
        result = await conn.execute(self._ranked(key, opened))
        for r in result:
            if r[0] in rows:
                _timed(rows[r[0]], r[1:])

    @staticmethod
    def _ranked(key: ColumnElement[Any] | None, opened: Any) -> Any:
        """SQLite has no ordered-set aggregates: rank with window functions and pick the
        rows at the nearest ranks (the same values percentile_disc gives)."""
        partition = [key] if key is not None else None
        columns: list[Any] = [(key if key is not None else literal_column("NULL")).label("k")]
        for name, value in _TIMED.items():
            columns += [value.label(f"{name}_v"),
                        func.row_number().over(partition_by=partition, order_by=[value.is_(None), value])
                        .label(f"{name}_rn"),
                        func.count(value).over(partition_by=partition).label(f"{name}_n")]
        ranked = select(*columns).where(opened).subquery()
        picks: list[Any] = [ranked.c.k if key is not None else literal_column("NULL")]
        for name in _TIMED:
            v, rn, n = ranked.c[f"{name}_v"], ranked.c[f"{name}_rn"], ranked.c[f"{name}_n"]
            for percent in (50, 90):
                # rank_of(n, p) = (p·n + 99) // 100, in SQL's integer arithmetic.
                picks.append(func.max(case((rn == (n * percent + 99) // 100, v), else_=None)))
        query = select(*picks)
        return query.group_by(ranked.c.k) if key is not None else query

    async def _csat(self, conn: AsyncConnection, key: ColumnElement[Any] | None, period: Period,
                    rows: dict[Any, dict[str, Any]]) -> None:
        """The answers given in the period, grouped by their ticket's group."""
        r_ = ratings.c
        label = key.label("k") if key is not None else literal_column("NULL").label("k")
        query = (select(label, func.count(r_.score), func.avg(r_.score), _count_if(r_.score >= SATISFIED),
                        _count_if(r_.solved.is_(False)))
                 .select_from(ratings.join(tickets, tickets.c.id == r_.ticket_id))
                 .where(and_(r_.created_at >= period.start, r_.created_at < period.end)))
        if key is not None:
            query = query.group_by(key)
        for r in await conn.execute(query):
            if int(r[1]) == 0 and int(r[4]) == 0:
                continue
            row = rows.setdefault(r[0], _empty(r[0]))
            scored = int(r[1])
            row["csat"] = {"count": scored, "average": None if r[2] is None else round(float(r[2]), 2),
                           "satisfied_pct": pct(int(r[3]), scored), "not_solved": int(r[4])}


def _timed(row: dict[str, Any], values: Any) -> None:
    """The medians and p90s of the timed figures, in `_TIMED`'s order, into a row."""
    for i, name in enumerate(_TIMED):
        median, p90 = values[2 * i], values[2 * i + 1]
        row[name]["median_s"] = None if median is None else round(float(median))
        row[name]["p90_s"] = None if p90 is None else round(float(p90))


def _empty(key: Any) -> dict[str, Any]:
    return {"key": key, "tickets_opened": 0,
            "first_response": {"count": 0, "median_s": None, "p90_s": None},
            "next_response": {"tickets": 0, "steps": 0, "median_s": None, "p90_s": None},
            "resolution": {"count": 0, "median_s": None, "p90_s": None},
            "sla": sla_figures(0, 0, 0, 0, 0, 0),
            "held": {"tickets": 0, "total_s": 0, "mean_s": None, "max_s": None},
            "csat": {"count": 0, "average": None, "satisfied_pct": None, "not_solved": 0}}
