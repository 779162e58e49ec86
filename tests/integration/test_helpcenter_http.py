"""Help-centre HTTP endpoints: search and deflection counting on a real, migrated SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from server.clock import FixedClock
from server.rules.helpsearch import HelpIndex
from server.settings import Settings
from server.store import models
from server.store.db import create_engine, migrate
from server.store.deflections import DeflectionStore
from server.web import help_api
from server.web.tokens import mint

SECRET = "helpcenter-test-secret-0123456789"
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
HELP_DIR = Path(__file__).resolve().parents[2] / "help"


@pytest.fixture
def database(tmp_path: Path) -> Settings:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'pomoc.db'}", secret=SECRET)
    migrate(settings)
    return settings


@pytest.fixture
async def client_and_store(database: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, DeflectionStore]]:
    engine = create_engine(database)
    store = DeflectionStore(engine, models.help_deflections)
    app = Starlette(routes=help_api.routes(index=HelpIndex.from_directory(HELP_DIR),
                                                 deflections_of=lambda request: store, secret=SECRET,
                                                 clock=FixedClock(NOW)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://pomoc.test") as client:
        yield client, store
    await engine.dispose()


def _bearer(shop: str = "shop-a") -> dict[str, str]:
    return {"Authorization": "Bearer " + mint(SECRET, role="customer", sub="owner", shop=shop, now=NOW)}


async def test_search_best_first(client_and_store: tuple[httpx.AsyncClient, DeflectionStore]) -> None:
    client, _ = client_and_store
    response = await client.get("/api/help/search", params={"q": "nie działa płatność przelewy24"})
    assert response.status_code == 200
    articles = response.json()["articles"]
    assert articles[0]["id"] == "platnosci-przelewy24"
    assert set(articles[0]) >= {"id", "title", "snippet", "url"}
    assert len(articles) <= 5
    limited = await client.get("/api/help/search", params={"q": "zamówienie", "limit": "2"})
    assert len(limited.json()["articles"]) == 2


@pytest.mark.parametrize("params", [{}, {"q": ""}, {"q": "   "}, {"q": "x" * 501}, {"q": "ok", "limit": "0"},
                                    {"q": "ok", "limit": "abc"}, {"q": "ok", "limit": "21"}])
async def test_search_refusals(client_and_store: tuple[httpx.AsyncClient, DeflectionStore],
                               params: dict[str, str]) -> None:
    client, _ = client_and_store
    response = await client.get("/api/help/search", params=params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


async def test_deflections_are_counted(client_and_store: tuple[httpx.AsyncClient, DeflectionStore]) -> None:
    client, store = client_and_store
    for _ in range(2):
        ok = await client.post("/api/help/deflections", headers=_bearer(),
                               json={"article": "faktury-ksef", "query": "jak wystawić fakturę"})
        assert ok.status_code == 204 and ok.content == b""
    await client.post("/api/help/deflections", headers=_bearer("shop-b"), json={"article": "domena-ssl"})
    assert await store.counts() == {"faktury-ksef": 2, "domena-ssl": 1}
    assert await store.counts(since=NOW + timedelta(seconds=1)) == {}


@pytest.mark.parametrize(("headers", "body", "status"), [
    ({}, {"article": "faktury-ksef"}, 401),
    (None, {"article": "no-such-article"}, 404),
    (None, {"article": 5}, 400),
    (None, {"query": "x"}, 400),
    (None, {"article": "faktury-ksef", "query": "x" * 501}, 400),
    (None, ["faktury-ksef"], 400),
])
async def test_deflection_refusals(client_and_store: tuple[httpx.AsyncClient, DeflectionStore],
                                   headers: dict[str, str] | None, body: object, status: int) -> None:
    client, store = client_and_store
    response = await client.post("/api/help/deflections", headers=_bearer() if headers is None else headers,
                                 json=body)
    assert response.status_code == status
    assert await store.counts() == {}


async def test_deflection_body_must_be_small_json(client_and_store: tuple[httpx.AsyncClient, DeflectionStore]) -> None:
    client, _ = client_and_store
    not_json = await client.post("/api/help/deflections", headers=_bearer(), content=b"{oops")
    huge = await client.post("/api/help/deflections", headers=_bearer(), content=b" " * 10_000)
    assert (not_json.status_code, huge.status_code) == (400, 400)
