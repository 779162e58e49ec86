"""HTTP side of the lead's reports: `GET /api/reports?from=YYYY-MM-DD&to=YYYY-MM-DD`
(PROTOCOL.md, HTTP), JSON or, with `&format=csv`, CSV.

Needs an agent's Bearer token whose `lead` claim is true: none or a bad one is 401,
anyone else's 403. A missing or malformed date, `from` after `to` or a period longer
than 366 days is 400 with a message naming the problem. What the figures mean is
`server.rules.reports`; the SQL is `server.store.reports`.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Callable
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from server.clock import Clock
from server.errors import BadRequest, Forbidden, PomocError
from server.rules.reports import csv_rows, parse_period
from server.store.reports import ReportStore
from server.web.http_api import bearer_principal, error_response

log = logging.getLogger(__name__)
_NO_STORE = {"Cache-Control": "no-store"}


def routes(*, store_of: Callable[[Request], ReportStore], secret: str, wall: Clock,
           clock_of: Callable[[Request], Clock], tz: ZoneInfo) -> list[BaseRoute]:
    """`wall` checks token expiry (real time); `clock_of(request)` is the support
    rules' clock (which running deadlines are breached); `tz` the calendar's zone."""

    async def reports(request: Request) -> Response:
        try:
            principal = bearer_principal(request, secret, wall.now())
            if not principal.is_agent or not principal.lead:
                raise Forbidden("reports are for the support lead (a token with lead: true)")
            params = request.query_params
            fmt = params.get("format", "json")
            if fmt not in ("json", "csv"):
                raise BadRequest("'format' must be json or csv")
            period = parse_period(params.get("from"), params.get("to"), tz)
            started = time.perf_counter()
            report = await store_of(request).report(period, clock_of(request).now())
            log.info("reports.built", extra={"days": period.days,
                                             "duration_ms": round((time.perf_counter() - started) * 1000, 1)})
        except PomocError as err:
            return error_response(err)
        if fmt == "csv":
            out = io.StringIO()
            csv.writer(out, lineterminator="\r\n").writerows(csv_rows(report))
            name = f"pomoc-raport-{period.first.isoformat()}-{period.last.isoformat()}.csv"
            return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                            headers={**_NO_STORE, "Content-Disposition": f'attachment; filename="{name}"'})
        return JSONResponse(report, headers=_NO_STORE)

    return [Route("/api/reports", reports, methods=["GET"])]
