"""The lead's reports over HTTP, on SQLite and on PostgreSQL: a month seeded by direct
inserts checked against a hand count (JSON and CSV), the facts real frames record
(first responder, first and next response, resolution, rating), and who may ask
(401, 403) and what a bad period gets (400)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from server.settings import Settings
from server.store.db import create_engine
from server.store.models import help_deflections, ratings, shops, tickets
from tests import services
from tests.conftest import unique
from tests.integration.test_time_rules import open_ticket
from tests.wsclient import join

WARSAW = ZoneInfo("Europe/Warsaw")


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=WARSAW).astimezone(UTC)


def get(node, path: str, token: str | None) -> tuple[int, str, str]:
    request = urllib.request.Request(node.http + path, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get("content-type", ""), response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("content-type", ""), err.read().decode()


def _store(server_env: dict[str, str]) -> Settings:
    url = server_env["DATABASE_URL"]
    if url.startswith("sqlite:///"):
        return Settings(database_url=url.replace("sqlite:///", "sqlite+aiosqlite:///", 1))
    return Settings(database_url=services.POSTGRES_URL, database_schema=server_env["POMOC_DATABASE_SCHEMA"])


def _ticket(shop: str, n: int, created: datetime, **values: object) -> dict[str, object]:
    row: dict[str, object] = {"shop_id": shop, "created_by": "u", "client_id": f"c{n}", "title": f"T{n}",
                              "status": "closed", "severity": "minor", "context": {}, "last_seq": 0,
                              "created_at": created, "updated_at": created, "plan": "standard"}
    row.update(values)
    return row


async def seed_february(server_env: dict[str, str]) -> None:
    """Seven tickets around February 2025 (Warsaw), their ratings and deflections:
    the hand count in test_a_seeded_month_matches_the_hand_count."""
    engine = create_engine(_store(server_env))
    shop = unique("feb")
    t1 = local("2025-02-03T10:00")
    t2 = local("2025-02-10T09:00")
    t3 = local("2025-02-15T20:00")
    t4 = local("2025-02-20T18:00")
    rows = [
        _ticket(shop, 1, t1, department="platnosci", severity="major", first_responder="anna",
                first_response_at=t1 + timedelta(hours=1), first_response_due_at=t1 + timedelta(days=1),
                first_response_s=3600, next_responses=2, next_response_s=2400, next_response_breaches=1,
                resolution_s=7200),
        _ticket(shop, 2, t2, department="platnosci", plan="priority", first_responder="anna",
                first_response_at=t2 + timedelta(minutes=10), first_response_due_at=t2 + timedelta(days=4),
                first_response_s=600, resolution_s=3600),
        _ticket(shop, 3, t3, department="techniczny", severity="critical", first_responder="bartek",
                first_response_at=t3 + timedelta(minutes=20), first_response_due_at=t3 + timedelta(minutes=10),
                first_response_s=1200, status="open"),
        _ticket(shop, 4, t4, severity="question", status="open", first_response_due_at=t4 + timedelta(days=1),
                sla_due_at=t4 + timedelta(days=1), held_s=15 * 3600),
        # The last minutes of the period are in it; the first of March (00:30 Warsaw,
        # still 28 February in UTC) and the last of January are not.
        _ticket(shop, 5, local("2025-02-28T23:30"), department="techniczny", status="open",
                first_response_due_at=datetime(2030, 1, 1, tzinfo=UTC), sla_due_at=datetime(2030, 1, 1, tzinfo=UTC)),
        _ticket(shop, 6, local("2025-03-01T00:30"), department="techniczny", first_responder="bartek",
                first_response_s=5, first_response_at=local("2025-03-01T00:31"), held_s=99),
        _ticket(shop, 7, local("2025-01-31T23:59"), department="platnosci", severity="major",
                first_responder="anna", first_response_s=7, first_response_at=local("2025-02-01T00:10")),
    ]
    async with engine.begin() as conn:
        await conn.execute(shops.insert().values(id=shop, name="Luty", plan="standard", created_at=t1, updated_at=t1))
        ids = []
        for row in rows:
            ids.append((await conn.execute(tickets.insert().values(**row).returning(tickets.c.id))).scalar_one())

        def rating(ticket: int, at: str, score: int | None, solved: bool = True) -> dict[str, object]:
            return {"ticket_id": ids[ticket - 1], "shop_id": shop, "user_id": "u", "solved": solved, "score": score,
                    "comment": None, "created_at": local(at)}

        await conn.execute(ratings.insert(), [
            rating(1, "2025-02-05T12:00", 5), rating(2, "2025-02-12T12:00", 3),
            rating(3, "2025-02-16T12:00", None, solved=False), rating(3, "2025-02-17T12:00", 4),
            rating(7, "2025-02-02T12:00", 2),  # a January ticket rated in February: counted
            rating(1, "2025-03-02T12:00", 1),  # March: not
        ])
        await conn.execute(help_deflections.insert(), [
            {"article_id": "a", "shop_id": shop, "query": "q", "created_at": local(at)}
            for at in ("2025-02-01T00:05", "2025-02-14T10:00", "2025-02-28T23:59", "2025-03-01T00:01")])
    await engine.dispose()


@pytest.fixture(scope="module")
def february(server_env):
    asyncio.run(seed_february(server_env))


def _by_key(rows: list[dict]) -> dict:
    return {r["key"]: r for r in rows}


def test_a_seeded_month_matches_the_hand_count(server, february, tokens):
    lead = tokens.agent(unique("lead"), "Lidia", lead=True)
    status, kind, body = get(server, "/api/reports?from=2025-02-01&to=2025-02-28", lead)
    assert status == 200 and kind.startswith("application/json"), body
    report = json.loads(body)
    assert report["days"] == 28 and report["deflections"] == 3
    assert report["start"] == "2025-01-31T23:00:00+00:00" and report["end"] == "2025-02-28T23:00:00+00:00"
    (total,) = report["groups"]["total"]
    assert total["tickets_opened"] == 5
    # First responses 600, 1200, 3600: nearest-rank median the 2nd, p90 the 3rd.
    assert total["first_response"] == {"count": 3, "median_s": 1200, "p90_s": 3600}
    assert total["next_response"] == {"tickets": 1, "steps": 2, "median_s": 1200, "p90_s": 1200}
    assert total["resolution"] == {"count": 2, "median_s": 3600, "p90_s": 7200}
    # Decided: 2 first responses on time, 1 late, 1 unanswered past its deadline; 2 steps, 1 late.
    assert total["sla"] == {"decided": 6, "met": 3, "met_pct": 50.0, "breaches": 3}
    assert total["held"] == {"tickets": 1, "total_s": 54000, "mean_s": 54000, "max_s": 54000}
    # Ratings given in February: 5, 3, 4 and 2 (a January ticket's), and one "no".
    assert total["csat"] == {"count": 4, "average": 3.5, "satisfied_pct": 50.0, "not_solved": 1}

    departments = report["groups"]["department"]
    assert [r["key"] for r in departments] == ["platnosci", "techniczny", None]
    d = _by_key(departments)
    assert d["platnosci"]["tickets_opened"] == 2
    assert d["platnosci"]["first_response"] == {"count": 2, "median_s": 600, "p90_s": 3600}
    assert d["platnosci"]["sla"] == {"decided": 4, "met": 3, "met_pct": 75.0, "breaches": 1}
    assert d["platnosci"]["csat"] == {"count": 3, "average": 3.33, "satisfied_pct": 33.3, "not_solved": 0}
    assert d["techniczny"]["tickets_opened"] == 2 and d["techniczny"]["sla"]["met_pct"] == 0.0
    assert d["techniczny"]["csat"] == {"count": 1, "average": 4.0, "satisfied_pct": 100.0, "not_solved": 1}
    assert d[None]["held"]["tickets"] == 1 and d[None]["sla"]["breaches"] == 1

    agents = _by_key(report["groups"]["agent"])
    assert set(agents) == {"anna", "bartek", None}
    assert agents["anna"]["tickets_opened"] == 2 and agents["anna"]["csat"]["count"] == 3
    assert agents[None]["tickets_opened"] == 2 and agents[None]["first_response"]["count"] == 0
    plans = _by_key(report["groups"]["plan"])
    assert plans["standard"]["tickets_opened"] == 4 and plans["priority"]["tickets_opened"] == 1
    severities = _by_key(report["groups"]["severity"])
    assert {k: v["tickets_opened"] for k, v in severities.items()} == {"critical": 1, "major": 1, "minor": 2,
                                                                       "question": 1}

    status, kind, text = get(server, "/api/reports?from=2025-02-01&to=2025-02-28&format=csv", lead)
    assert status == 200 and kind.startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(text)))
    assert len(lines) == 1 + 3 + 4 + 2 + 3
    first = lines[0]
    assert (first["dimension"], first["key"], first["tickets_opened"], first["first_response_median_s"],
            first["sla_met_pct"], first["csat_average"], first["help_deflections"]) == (
        "total", "", "5", "1200", "50", "3.5", "3")
    platnosci = next(r for r in lines if r["dimension"] == "department" and r["key"] == "platnosci")
    assert platnosci["csat_satisfied_pct"] == "33.3" and platnosci["help_deflections"] == ""


def test_a_single_day_and_an_empty_period(server, february, tokens):
    lead = tokens.agent(unique("lead"), "Lidia", lead=True)
    report = json.loads(get(server, "/api/reports?from=2025-02-28&to=2025-02-28", lead)[2])
    assert report["groups"]["total"][0]["tickets_opened"] == 1  # 23:30 on the last day
    empty = json.loads(get(server, "/api/reports?from=2024-06-01&to=2024-06-30", lead)[2])
    (total,) = empty["groups"]["total"]
    assert total["tickets_opened"] == 0 and total["first_response"]["median_s"] is None
    assert total["sla"]["met_pct"] is None and empty["groups"]["department"] == []


@pytest.mark.parametrize("query, words", [
    ("", "'from' is required"), ("?from=2025-02-01", "'to' is required"),
    ("?from=2025-2-1&to=2025-02-28", "YYYY-MM-DD"), ("?from=2025-02-30&to=2025-03-01", "not a real date"),
    ("?from=2025-03-01&to=2025-02-01", "is after"), ("?from=2024-01-01&to=2025-01-01", "at most 366 days"),
    ("?from=2025-02-01&to=2025-02-28&format=xml", "'format'"),
])
def test_a_bad_period_is_400_with_a_clear_message(server, tokens, query, words):
    status, _, body = get(server, "/api/reports" + query, tokens.agent(unique("lead"), "Lidia", lead=True))
    assert status == 400, body
    error = json.loads(body)["error"]
    assert error["code"] == "bad_request" and words in error["message"], error


def test_only_the_lead_sees_reports(server, tokens):
    path = "/api/reports?from=2025-02-01&to=2025-02-28"
    assert get(server, path, None)[0] == 401
    assert get(server, path, "not-a-token")[0] == 401
    assert get(server, path, tokens.agent(unique("a")))[0] == 403
    assert get(server, path, tokens.customer(unique("shop")))[0] == 403
    assert get(server, "/api/reports?from=2024-01-01&to=2025-01-01", tokens.agent(unique("a")))[0] == 403
    # 366 days (a leap year) is allowed.
    assert get(server, "/api/reports?from=2024-01-01&to=2024-12-31", tokens.agent(unique("l"), lead=True))[0] == 200


MONDAY = "2025-06-02T10:00:00+02:00"


async def test_what_real_frames_record_is_reported(at_clock, clients):
    node, tokens = at_clock(MONDAY)
    customer, _ = await join(node, clients, tokens.customer(unique("shop")))
    ticket, _ = await open_ticket(customer, "minor", "Faktury")
    agent_id = unique("anna")
    agent, _ = await join(node, clients, tokens.agent(agent_id, "Anna"))
    await agent.request({"type": "send", "ticket": ticket["id"], "body": "Sprawdzam"}, "ack")
    await customer.request({"type": "send", "ticket": ticket["id"], "body": "Nadal źle"}, "ack")
    await agent.request({"type": "send", "ticket": ticket["id"], "body": "Poprawione"}, "ack")
    await agent.request({"type": "update_ticket", "ticket": ticket["id"], "status": "resolved"}, "ticket")
    await customer.expect("ticket", lambda f: f["ticket"]["id"] == ticket["id"] and f["ticket"]["status"] == "resolved")
    await customer.request({"type": "rate", "ticket": ticket["id"], "score": 4}, "ticket")

    lead = tokens.agent(unique("lead"), "Lidia", lead=True)
    status, _, body = get(node, "/api/reports?from=2025-06-02&to=2025-06-02", lead)
    assert status == 200, body
    report = json.loads(body)
    (total,) = report["groups"]["total"]
    assert total["tickets_opened"] == 1
    # Monday 10:00 is working time: each wait is the few seconds the test took.
    assert total["first_response"]["count"] == 1 and 0 <= total["first_response"]["median_s"] < 60
    assert total["next_response"]["steps"] == 1 and 0 <= total["next_response"]["median_s"] < 60
    assert total["resolution"]["count"] == 1 and 0 <= total["resolution"]["median_s"] < 60
    assert total["sla"] == {"decided": 2, "met": 2, "met_pct": 100.0, "breaches": 0}
    assert total["csat"] == {"count": 1, "average": 4.0, "satisfied_pct": 100.0, "not_solved": 0}
    assert [r["key"] for r in report["groups"]["agent"]] == [agent_id]
