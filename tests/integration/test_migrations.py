"""The Alembic migrations create exactly the tables `server.store.models` declares."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from server.settings import Settings
from server.store.db import create_engine, migrate
from server.store.models import metadata
from tests import services
from tests.conftest import _drop_schema

SEARCH_OBJECTS = ("ix_search_documents", "ix_tickets_search", "messages_search", "tickets_search", "search_documents",
                  "search_cursor")


def _diff(settings: Settings) -> list[object]:
    async def compare() -> list[object]:
        engine = create_engine(settings)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(
                    lambda sync: compare_metadata(MigrationContext.configure(sync), metadata))
        finally:
            await engine.dispose()

    return asyncio.run(compare())


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_migrations_match_the_models(kind, tmp_path):
    if kind == "sqlite":
        settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
    else:
        services.require("PostgreSQL", services.POSTGRES_URL)
        settings = Settings(database_url=services.POSTGRES_URL,
                            database_schema=f"{services.PG_SCHEMA}_mig_{uuid.uuid4().hex[:6]}")
    try:
        migrate(settings)
        migrate(settings)  # idempotent: a second run changes nothing
        differences = [d for d in _diff(settings) if not _is_noise(d, kind)]
        assert differences == []
    finally:
        if settings.database_schema:
            _drop_schema(settings.database_schema)


def _is_noise(difference: object, kind: str) -> bool:
    # SQLite reports no server defaults for booleans the way PostgreSQL does, and the
    # version table is Alembic's own.
    # The search index (migration 0012) is the database's own: an expression index on
    # PostgreSQL, FTS5 tables and their shadow tables on SQLite; no model declares it.
    text = repr(difference)
    if any(f"'{name}" in text for name in SEARCH_OBJECTS):
        return True
    return "alembic_version" in text or (kind == "sqlite" and "server_default" in text)
