"""Canned replies over HTTP (`/api/canned`) against real, migrated SQLite and PostgreSQL.

A tiny Starlette app is built inline from `server.web.canned_api.routes` and driven in
process with httpx's ASGI transport; the database is brought to head by the real
migrations, which also seed the starting replies.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from server.clock import FixedClock
from server.rules.canned_seeds import SEED_REPLIES
from server.rules.helpsearch import HelpIndex
from server.rules.intake import DEFAULT_DEPARTMENTS, parse_departments
from server.settings import Settings
from server.store.canned import CannedStore
from server.store.db import create_engine, migrate
from server.store.models import canned_replies, customers, shops, tickets
from server.web import canned_api
from server.web.tokens import mint
from tests import services
from tests.conftest import _drop_schema

SECRET = "canned-test-secret-0123456789abcdef"
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
HELP_DIR = Path(__file__).resolve().parents[2] / "help"
BASE = "http://pomoc.test"
DEPARTMENTS = [d.key for d in parse_departments(DEFAULT_DEPARTMENTS)]
P24_URL = BASE + "/help/platnosci-przelewy24"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def migrated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A database at the head migration: a SQLite template file (copied per test) or a
    PostgreSQL schema of this module (put back to the seeded replies after each test)."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("canned-db") / "template.db"
        settings = Settings(database_url=f"sqlite+aiosqlite:///{path}", secret=SECRET)
        migrate(settings)
        yield settings
        return
    services.require("PostgreSQL", services.POSTGRES_URL)
    schema = f"{services.PG_SCHEMA}_canned_{uuid.uuid4().hex[:6]}"
    settings = Settings(database_url=services.POSTGRES_URL, database_schema=schema, secret=SECRET)
    migrate(settings)
    yield settings
    _drop_schema(schema)


@dataclass
class World:
    client: httpx.AsyncClient
    engine: AsyncEngine
    clock: FixedClock
    tickets: dict[str, int]

    def agent(self, sub: str = "agent-1") -> dict[str, str]:
        return {"Authorization": "Bearer " + mint(SECRET, role="agent", sub=sub, name="Agnieszka",
                                                  now=self.clock.now())}

    def customer(self) -> dict[str, str]:
        return {"Authorization": "Bearer " + mint(SECRET, role="customer", sub="owner", shop="shop-a",
                                                  now=self.clock.now())}

    async def send(self, method: str, url: str, body: object) -> httpx.Response:
        # json.dumps escapes what is not ASCII, so a lone surrogate travels as "\\ud800".
        return await self.client.request(method, url, content=json.dumps(body),
                                         headers={**self.agent(), "Content-Type": "application/json"})

    async def create(self, **fields: Any) -> httpx.Response:
        body = {"title": "Tytuł", "shortcut": "test", "body": "Dzień dobry {imie}."} | fields
        return await self.send("POST", "/api/canned", body)

    async def by_shortcut(self, shortcut: str, department: str | None = None) -> dict[str, Any]:
        listed = (await self.client.get("/api/canned", headers=self.agent())).json()["replies"]
        return next(r for r in listed if r["shortcut"] == shortcut and r["department"] == department)


async def _seed_tickets(engine: AsyncEngine) -> dict[str, int]:
    ids: dict[str, int] = {}
    async with engine.begin() as conn:
        await conn.execute(insert(shops).values(id="shop-a", name="Sklep Testowy", plan="trial", created_at=NOW,
                                                updated_at=NOW))
        await conn.execute(insert(customers).values(
            [{"shop_id": "shop-a", "user_id": "u-anna", "name": "Anna Kowalska", "first_seen_at": NOW,
              "last_seen_at": NOW},
             # A token without a name claim: the name is the id.
             {"shop_id": "shop-a", "user_id": "u-42", "name": "u-42", "first_seen_at": NOW, "last_seen_at": NOW}]))
        for key, user, department in (("p24", "u-anna", "payments"), ("anon", "u-42", "payments"),
                                      ("nodept", "u-anna", None)):
            result = await conn.execute(insert(tickets).values(
                shop_id="shop-a", created_by=user, title="Płatności nie działają", status="open",
                severity="major", department=department, context={}, last_seq=0, created_at=NOW, updated_at=NOW))
            ids[key] = int(result.inserted_primary_key[0])
    return ids


@pytest.fixture
async def world(migrated: Settings, tmp_path: Path) -> AsyncIterator[World]:
    settings = migrated
    if settings.is_sqlite:
        db = tmp_path / "pomoc.db"
        shutil.copy(settings.database_url.split("///", 1)[1], db)
        settings = settings.with_(database_url=f"sqlite+aiosqlite:///{db}")
    engine = create_engine(settings)
    async with engine.connect() as conn:
        seeded = [dict(r._mapping) for r in (await conn.execute(select(canned_replies))).all()]
    ticket_ids = await _seed_tickets(engine)
    clock = FixedClock(NOW)
    app = Starlette(routes=canned_api.routes(store_of=lambda request: CannedStore(engine), secret=SECRET,
                                             clock=clock, departments=DEPARTMENTS,
                                             index=HelpIndex.from_directory(HELP_DIR), public_base=BASE + "/"))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE) as client:
            yield World(client, engine, clock, ticket_ids)
    finally:
        if not settings.is_sqlite:
            async with engine.begin() as conn:
                await conn.execute(canned_replies.delete())
                await conn.execute(insert(canned_replies).values(seeded))
                await conn.execute(shops.delete())
        await engine.dispose()


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return str(body["error"]["message"])


# ------------------------------------------------------------------ listing and filling

async def test_the_migration_seeds_realistic_replies(world: World) -> None:
    response = await world.client.get("/api/canned", headers=world.agent())
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert [p["name"] for p in body["placeholders"]] == ["imie", "sklep", "zgloszenie"]
    replies = body["replies"]
    assert {r["shortcut"] for r in replies} == {s.shortcut for s in SEED_REPLIES}
    p24 = next(r for r in replies if r["shortcut"].startswith("prz"))
    assert p24["department"] == "payments" and p24["created_by"] == "pomoc"
    assert "{sklep}" in p24["body"] and "a nie błąd systemu" in p24["body"]
    assert p24["articles"] == [{"id": "platnosci-przelewy24", "url": P24_URL,
                                "title": "Przelewy24 – konfiguracja płatności i najczęstsze błędy"}]
    # Shared replies first.
    assert replies[-1]["department"] == "payments" and all(r["department"] is None for r in replies[:-1])


async def test_a_department_lists_its_replies_and_the_shared_ones(world: World) -> None:
    assert (await world.create(shortcut="inpost", department="shipping")).status_code == 201
    payments = (await world.client.get("/api/canned?department=payments", headers=world.agent())).json()["replies"]
    shipping = (await world.client.get("/api/canned?department=shipping", headers=world.agent())).json()["replies"]
    assert {r["department"] for r in payments} == {None, "payments"}
    assert {r["department"] for r in shipping} == {None, "shipping"}
    assert "przelewy24" not in {r["shortcut"] for r in shipping}
    every = (await world.client.get("/api/canned?department=", headers=world.agent())).json()["replies"]
    assert len(every) == len(SEED_REPLIES) + 1


async def test_for_a_ticket_the_replies_come_filled_in(world: World) -> None:
    ticket = world.tickets["p24"]
    response = await world.client.get(f"/api/canned?ticket={ticket}", headers=world.agent())
    assert response.status_code == 200, response.text
    replies = response.json()["replies"]
    assert {r["department"] for r in replies} == {None, "payments"}
    p24 = next(r for r in replies if r["shortcut"] == "przelewy24")
    text = p24["text"]
    assert text.startswith("Dzień dobry Anna,\n")
    assert "sprawdziliśmy płatności w sklepie Sklep Testowy: to jest konfiguracja kluczy Przelewy24" in text
    assert f"(#{ticket} „Płatności nie działają”)" in text
    assert text.endswith("Więcej w Centrum Pomocy:\n• Przelewy24 – konfiguracja płatności i najczęstsze błędy: "
                         + P24_URL)
    assert "{" not in text
    one = await world.client.get(f"/api/canned/{p24['id']}?ticket={ticket}", headers=world.agent())
    assert one.json()["text"] == text


async def test_a_customer_without_a_name_is_greeted_plainly(world: World) -> None:
    replies = (await world.client.get(f"/api/canned?ticket={world.tickets['anon']}",
                                      headers=world.agent())).json()["replies"]
    assert next(r for r in replies if r["shortcut"] == "dane")["text"].startswith("Dzień dobry,\n\ndziękuję")


async def test_a_ticket_without_a_department_gets_the_shared_replies(world: World) -> None:
    replies = (await world.client.get(f"/api/canned?ticket={world.tickets['nodept']}",
                                      headers=world.agent())).json()["replies"]
    assert replies and {r["department"] for r in replies} == {None}


@pytest.mark.parametrize(("query", "status", "fragment"), [
    ("department=nope", 400, "department must be null (shared) or one of payments"),
    ("ticket=abc", 400, "ticket must be a ticket number"),
    ("ticket=%C2%B2", 400, "ticket must be a ticket number"),
    ("ticket=" + "9" * 19, 400, "ticket must be a ticket number"),
    ("ticket=999999", 404, "ticket 999999 does not exist"),
    ("ticket=1&department=payments", 400, "not both"),
])
async def test_listing_refusals(world: World, query: str, status: int, fragment: str) -> None:
    response = await world.client.get(f"/api/canned?{query}", headers=world.agent())
    assert fragment in _error(response, status)


# ------------------------------------------------------------------ create, change, delete

async def test_create_read_replace_patch_and_delete(world: World) -> None:
    created = await world.create(title="  Zwroty  ", shortcut=" Zwrot ", department="orders",
                                 body="Dzień dobry {imie}, zwrot w {sklep}.", articles=["zwroty-reklamacje"])
    assert created.status_code == 201, created.text
    reply = created.json()
    assert (reply["title"], reply["shortcut"], reply["department"], reply["created_by"]) == \
        ("Zwroty", "zwrot", "orders", "agent-1")
    assert reply["articles"][0]["id"] == "zwroty-reklamacje"
    assert reply["created_at"] == reply["updated_at"] == NOW.isoformat()
    url = f"/api/canned/{reply['id']}"
    assert (await world.client.get(url, headers=world.agent())).json() == reply

    world.clock.set(NOW + timedelta(minutes=5))
    replaced = await world.client.put(url, headers=world.agent("agent-2"),
                                      json={"title": "Zwroty towaru", "shortcut": "zwroty", "body": "Treść"})
    assert replaced.status_code == 200, replaced.text
    after = replaced.json()
    # PUT replaces every editable field: no department (shared) and no articles now.
    assert (after["title"], after["shortcut"], after["department"], after["articles"], after["body"]) == \
        ("Zwroty towaru", "zwroty", None, [], "Treść")
    assert after["created_by"] == "agent-1"  # who wrote it, not who changed it
    assert after["updated_at"] == (NOW + timedelta(minutes=5)).isoformat()

    patched = await world.client.patch(url, headers=world.agent(), json={"department": "orders"})
    assert patched.status_code == 200
    assert (patched.json()["department"], patched.json()["title"]) == ("orders", "Zwroty towaru")
    same = await world.client.patch(url, headers=world.agent(), json={"department": "orders"})
    assert same.json() == patched.json()

    deleted = await world.client.delete(url, headers=world.agent())
    assert deleted.status_code == 204 and deleted.content == b""
    assert "does not exist" in _error(await world.client.get(url, headers=world.agent()), 404)
    for method in ("DELETE", "PUT", "PATCH"):
        response = await world.client.request(method, url, headers=world.agent(),
                                              json={"title": "x", "shortcut": "xx", "body": "x"})
        _error(response, 404)


@pytest.mark.parametrize("path", ["/api/canned/abc", "/api/canned/%C2%B2", "/api/canned/-1",
                                  "/api/canned/" + "9" * 19, "/api/canned/424242"])
async def test_unknown_ids(world: World, path: str) -> None:
    for method in ("GET", "DELETE", "PATCH"):
        _error(await world.client.request(method, path, headers=world.agent(), json={"title": "x"}), 404)


async def test_a_shortcut_is_unique_within_its_scope(world: World) -> None:
    # "dane" is a seeded shared reply: taken among the shared ones, free in a department.
    assert "already used among the shared replies" in _error(await world.create(shortcut="dane"), 409)
    assert "already used among the shared" in _error(await world.create(shortcut="DANE"), 409)
    assert (await world.create(shortcut="dane", department="orders")).status_code == 201
    assert "in department orders" in _error(await world.create(shortcut="dane", department="orders"), 409)
    other = (await world.create(shortcut="inne", department="orders")).json()
    taken = await world.client.patch(f"/api/canned/{other['id']}", headers=world.agent(), json={"shortcut": "dane"})
    assert "already used" in _error(taken, 409)
    moved = await world.client.patch(f"/api/canned/{other['id']}", headers=world.agent(), json={"department": None})
    assert moved.status_code == 200  # "inne" is free among the shared replies


async def test_two_agents_saving_one_shortcut_at_once_get_one_reply(world: World) -> None:
    first, second = await asyncio.gather(world.create(shortcut="naraz"), world.create(shortcut="naraz"))
    assert sorted((first.status_code, second.status_code)) == [201, 409]
    listed = (await world.client.get("/api/canned", headers=world.agent())).json()["replies"]
    assert [r["shortcut"] for r in listed].count("naraz") == 1


# ------------------------------------------------------------------ who may

ENDPOINTS = [("GET", "/api/canned"), ("POST", "/api/canned"), ("GET", "/api/canned/1"), ("PUT", "/api/canned/1"),
             ("PATCH", "/api/canned/1"), ("DELETE", "/api/canned/1")]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
async def test_only_agents_with_valid_tokens(world: World, method: str, path: str) -> None:
    body = {"title": "x", "shortcut": "xx", "body": "x"}
    missing = await world.client.request(method, path, json=body)
    assert "Bearer" in _error(missing, 401) and missing.headers["www-authenticate"] == "Bearer"
    forged = mint("another-secret-0123456789abcdef-0123", role="agent", sub="a", name="A", now=NOW)
    _error(await world.client.request(method, path, json=body, headers={"Authorization": f"Bearer {forged}"}), 401)
    expired = mint(SECRET, role="agent", sub="a", name="A", now=NOW - timedelta(days=1), ttl=timedelta(hours=1))
    assert "expired" in _error(await world.client.request(method, path, json=body,
                                                         headers={"Authorization": f"Bearer {expired}"}), 401)
    _error(await world.client.request(method, path, json=body, headers={"Authorization": "Basic abc"}), 401)
    refused = await world.client.request(method, path, json=body, headers=world.customer())
    assert "support team" in _error(refused, 403)
    # Nothing was created or changed by any of them.
    listed = (await world.client.get("/api/canned", headers=world.agent())).json()["replies"]
    assert len(listed) == len(SEED_REPLIES)


# ------------------------------------------------------------------ bad input

BAD_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({"title": None}, "title must be text"),
    ({"title": ""}, "title must not be empty"),
    ({"title": "  "}, "title must not be empty"),
    ({"title": "x" * 121}, "title must be at most 120"),
    ({"title": "a\nb"}, "title must be one line"),
    ({"title": "a\x00b"}, "U+0000"),
    ({"title": "a\ud800b"}, "U+D800"),
    ({"shortcut": 24}, "shortcut must be text"),
    ({"shortcut": "a"}, "shortcut must be 2 to 32"),
    ({"shortcut": "x" * 33}, "shortcut must be 2 to 32"),
    ({"shortcut": "/prz"}, "shortcut must be lower-case letters"),
    ({"shortcut": "płatność"}, "shortcut must be lower-case letters"),
    ({"body": ["x"]}, "body must be text"),
    ({"body": ""}, "body must not be empty"),
    ({"body": "x" * 4001}, "body must be at most 4000"),
    ({"body": "zły \x1b znak"}, "U+001B"),
    ({"body": "Dzień dobry {imię}"}, "unknown placeholder {imię}; the placeholders are {imie}, {sklep}, {zgloszenie}"),
    ({"body": "{customer}"}, "unknown placeholder {customer}"),
    ({"department": "nope"}, "department must be null (shared) or one of"),
    ({"department": 5}, "department must be null (shared) or one of"),
    ({"articles": "platnosci-przelewy24"}, "articles must be a list"),
    ({"articles": [1]}, "articles must be a list"),
    ({"articles": ["nie-ma-takiego"]}, "no help-centre article 'nie-ma-takiego'"),
    ({"articles": ["platnosci-przelewy24"] * 2}, "names an article twice"),
    ({"articles": ["a", "b", "c", "d", "e", "f"]}, "at most 5"),
    ({"colour": "red"}, "unknown field 'colour'"),
]


@pytest.mark.parametrize(("fields", "fragment"), BAD_FIELDS)
async def test_bad_fields_are_refused_everywhere(world: World, fields: dict[str, Any], fragment: str) -> None:
    assert fragment in _error(await world.create(**fields), 400)
    existing = await world.by_shortcut("koniec")
    url = f"/api/canned/{existing['id']}"
    full = {"title": "T", "shortcut": "koniec", "body": "B"} | fields
    assert fragment in _error(await world.send("PUT", url, full), 400)
    assert fragment in _error(await world.send("PATCH", url, fields), 400)
    assert await world.by_shortcut("koniec") == existing


@pytest.mark.parametrize("missing", ["title", "shortcut", "body"])
async def test_create_and_replace_need_every_required_field(world: World, missing: str) -> None:
    body = {"title": "T", "shortcut": "nowa", "body": "B"}
    del body[missing]
    assert f"{missing} is required" in _error(await world.client.post("/api/canned", json=body,
                                                                      headers=world.agent()), 400)
    existing = await world.by_shortcut("koniec")
    assert f"{missing} is required" in _error(
        await world.client.put(f"/api/canned/{existing['id']}", json=body, headers=world.agent()), 400)


@pytest.mark.parametrize(("content", "fragment"), [
    (b"{oops", "must be JSON"),
    (b"", "must be a JSON object"),
    (b'["title"]', "must be a JSON object"),
    (b'"text"', "must be a JSON object"),
    (b"\xff\xfe", "must be JSON"),
    (b"[" * 50_000 + b"]" * 10, "must be JSON"),
    (b" " * (65 * 1024), "larger than 64 KiB"),
])
async def test_bodies_that_are_not_small_json_objects(world: World, content: bytes, fragment: str) -> None:
    existing = await world.by_shortcut("koniec")
    for method, url in (("POST", "/api/canned"), ("PUT", f"/api/canned/{existing['id']}"),
                        ("PATCH", f"/api/canned/{existing['id']}")):
        response = await world.client.request(method, url, content=content, headers=world.agent())
        assert fragment in _error(response, 400), (method, content[:10])


async def test_an_empty_patch_is_refused(world: World) -> None:
    existing = await world.by_shortcut("koniec")
    response = await world.client.patch(f"/api/canned/{existing['id']}", json={}, headers=world.agent())
    assert "give at least one of" in _error(response, 400)
