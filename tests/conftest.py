"""Fixtures: real Redis (own key prefix), SQLite and PostgreSQL (own schema), real servers."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from server.settings import Settings
from server.store.db import migrate as migrate_store
from server.web.tokens import mint
from tests import services
from tests.servers import ROOT, ServerProcess

_counter = itertools.count(1)

# Property tests check rules, not speed: on a loaded 2-core machine a generous deadline
# would still flake, so there is none.
hypothesis_settings.register_profile("pomoc", deadline=None)
hypothesis_settings.load_profile("pomoc")


def unique(prefix: str) -> str:
    return f"{prefix}-{services.RUN_ID}-{next(_counter)}"


@pytest.fixture(scope="session")
def redis_url() -> str:
    services.require("Redis", services.REDIS_URL)
    return services.REDIS_URL


@pytest.fixture(scope="session", autouse=True)
def _clean_redis_after_run() -> Iterator[None]:
    yield
    if not services.reachable(services.REDIS_URL):
        return
    import redis

    client = redis.Redis.from_url(services.REDIS_URL)
    try:
        keys = list(client.scan_iter(match=services.REDIS_PREFIX + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(scope="session")
def postgres_schema() -> Iterator[str]:
    services.require("PostgreSQL", services.POSTGRES_URL)
    yield services.PG_SCHEMA
    _drop_schema(services.PG_SCHEMA)


def _drop_schema(schema: str) -> None:
    import asyncpg

    async def drop() -> None:
        url = services.POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


def fresh_store(kind: str, directory: Path, name: str) -> Settings:
    """Settings for stores used in-process: a new SQLite file in `directory` or a new
    PostgreSQL schema, migrated (`drop_store` removes the schema)."""
    if kind == "sqlite":
        settings = Settings(database_url=f"sqlite+aiosqlite:///{directory / (name + '.db')}")
    else:
        services.require("PostgreSQL", services.POSTGRES_URL)
        settings = Settings(database_url=services.POSTGRES_URL,
                            database_schema=f"{services.PG_SCHEMA}_{name}_{uuid.uuid4().hex[:6]}")
    migrate_store(settings)
    return settings


def drop_store(settings: Settings) -> None:
    if settings.database_schema:
        _drop_schema(settings.database_schema)


def database_env(kind: str, tmp: Path, schema: str | None = None) -> dict[str, str]:
    if kind == "sqlite":
        return {"DATABASE_URL": f"sqlite:///{tmp / 'pomoc.db'}"}
    return {"DATABASE_URL": services.POSTGRES_URL, "POMOC_DATABASE_SCHEMA": schema or services.PG_SCHEMA}


def migrate(env: dict[str, str]) -> None:
    import os

    subprocess.run([sys.executable, "-m", "server", "migrate"], cwd=ROOT, check=True,
                   env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, capture_output=True)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def db_kind(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        request.getfixturevalue("postgres_schema")
    return str(request.param)


@pytest.fixture(scope="module")
def server_env(db_kind: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp(f"pomoc-{db_kind}")
    schema = f"{services.PG_SCHEMA}_{next(_counter)}" if db_kind == "postgresql" else None
    env = {
        **database_env(db_kind, tmp, schema),
        "REDIS_URL": redis_url,
        "POMOC_REDIS_PREFIX": f"{services.REDIS_PREFIX}{next(_counter)}:",
        "POMOC_SECRET": services.SECRET,
        "POMOC_ALLOWED_ORIGINS": "https://shop.example,https://admin.example",
        "POMOC_LOG_LEVEL": "INFO",
        "POMOC_HELLO_TIMEOUT": "1.5",
        "POMOC_CLOCK": services.WORKING_CLOCK,
        # Protocol tests send in bulk; the limits have their own tests (test_fair_use).
        "POMOC_RATE_USER_MESSAGES": "off",
        "POMOC_RATE_SHOP_MESSAGES": "off",
        "POMOC_RATE_AGENT_MESSAGES": "off",
        "POMOC_RATE_SHOP_TICKETS": "off",
        "POMOC_TMP": str(tmp),
    }
    migrate(env)
    yield env
    if schema:
        _drop_schema(schema)


@pytest.fixture(scope="module")
def server(server_env: dict[str, str]) -> Iterator[ServerProcess]:
    proc = ServerProcess(dict(server_env), log_path=Path(server_env["POMOC_TMP"]) / "server.log").start()
    yield proc
    proc.stop()


class Tokens:
    """Tokens signed with the test servers' secret; each test gets fresh ids."""

    def __init__(self) -> None:
        # Real time: servers judge token expiry by the wall clock, whatever POMOC_CLOCK says.
        self.now = datetime.now(UTC)

    def customer(self, shop: str, sub: str = "owner", **claims: object) -> str:
        return mint(services.SECRET, role="customer", sub=sub, now=self.now, shop=shop,
                    shop_name=claims.pop("shop_name", f"Sklep {shop}"),  # type: ignore[arg-type]
                    plan=claims.pop("plan", "standard"), **claims)  # type: ignore[arg-type]

    def agent(self, sub: str = "agent", name: str = "Agnieszka", **claims: object) -> str:
        return mint(services.SECRET, role="agent", sub=sub, name=name, now=self.now, **claims)  # type: ignore[arg-type]

    def expired(self, shop: str) -> str:
        return mint(services.SECRET, role="customer", sub="late", now=self.now - timedelta(days=1),
                    ttl=timedelta(hours=1), shop=shop)


@pytest.fixture
def tokens() -> Tokens:
    return Tokens()


@pytest.fixture
def shop() -> str:
    return unique("shop")


@pytest.fixture
async def clients() -> AsyncIterator[list]:
    opened: list = []
    yield opened
    for client in opened:
        try:
            await asyncio.wait_for(client.close(), 3)
        except Exception:  # noqa: BLE001 - teardown of a connection the test may have broken on purpose
            pass


@pytest.fixture
def at_clock(server_env: dict[str, str], tmp_path: Path) -> Iterator[object]:
    """Start servers whose clock starts at a given instant, on a Redis prefix of the
    test's own (`like=` another started server shares its prefix), with the jobs left
    to `python -m server jobs --once --at …` processes."""
    started: list[ServerProcess] = []
    prefix = f"{services.REDIS_PREFIX}{uuid.uuid4().hex[:6]}:"

    def start(clock: str, like: ServerProcess | None = None, **extra: str) -> tuple[ServerProcess, Tokens]:
        env = {**server_env, "POMOC_CLOCK": clock, "POMOC_JOBS_IN_WEB": "false",
               "POMOC_REDIS_PREFIX": like.env["POMOC_REDIS_PREFIX"] if like else prefix, **extra}
        node = ServerProcess(env, log_path=tmp_path / f"clock-{len(started)}.log").start()
        started.append(node)
        return node, Tokens()

    yield start
    for node in started:
        node.stop()
