"""Database engine and migrations.

`create_engine(settings)` builds the async engine for SQLite (aiosqlite) or
PostgreSQL (asyncpg) with the pragmas and pool each needs; `migrate(settings)` runs
Alembic to head. An optional schema (`POMOC_DATABASE_SCHEMA`) lets several
deployments or test runs share one PostgreSQL database.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from server.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def create_engine(settings: Settings) -> AsyncEngine:
    if settings.is_sqlite:
        engine = create_async_engine(settings.database_url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL lets readers run beside the single writer; NORMAL sync is durable
            # against process crashes, which is what "acked means stored" guards.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    server_settings = {"application_name": "pomoc"}
    if settings.database_schema:
        server_settings["search_path"] = settings.database_schema
    return create_async_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_size,
        pool_timeout=30,
        pool_pre_ping=False,
        connect_args={"server_settings": server_settings, "command_timeout": 60},
    )


def single_statements(engine: AsyncEngine) -> AsyncEngine:
    """The same pool for work that is one statement: each runs as its own transaction.

    Under PostgreSQL's READ COMMITTED every statement takes its own snapshot anyway,
    so the BEGIN and the ROLLBACK (or COMMIT) a pooled connection would otherwise
    spend around a single read or upsert add two round trips and nothing else.
    Several statements that must commit together still use `engine.begin()`.
    SQLite keeps its defaults."""
    if engine.dialect.name != "postgresql":
        return engine
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def alembic_config(settings: Settings) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["settings"] = settings
    return cfg


def migrate(settings: Settings, revision: str = "head") -> None:
    """Bring the schema to `revision`. Synchronous: call it outside the event loop."""
    from alembic import command

    command.upgrade(alembic_config(settings), revision)
