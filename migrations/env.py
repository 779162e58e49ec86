"""Alembic environment: runs migrations on the async engine Pomoc itself uses."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from server.store.db import create_engine
from server.store.models import metadata
from server.settings import Settings

config = context.config
settings: Settings = config.attributes.get("settings") or Settings.from_env(os.environ)


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table_schema=settings.database_schema,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    engine = create_engine(settings, maintenance=True)
    try:
        async with engine.connect() as conn:
            if settings.database_schema and conn.dialect.name == "postgresql":
                await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{settings.database_schema}"'))
                await conn.commit()
            await conn.run_sync(_run)
            await conn.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `python -m server migrate`")
asyncio.run(_main())
