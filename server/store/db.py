"""Database engine and migrations.

`create_engine(settings)` builds the async engine for SQLite (aiosqlite) or
PostgreSQL (asyncpg) with the pragmas and pool each needs; `migrate(settings)` runs
Alembic to head. An optional schema (`POMOC_DATABASE_SCHEMA`) lets several
deployments or test runs share one PostgreSQL database.

Every wait on the database is bounded by `POMOC_DATABASE_TIMEOUT`: connecting,
each statement (COMMIT included) and waiting for a pooled connection; SQLite waits
as long for a lock. A database that hangs (stopped, partitioned) then costs a
request `unavailable`, never a client waiting forever. A statement that timed out
is cancelled and, if the cancel is not answered in time either, its connection is
dropped, so nothing is reused in an unknown state. These bounds do not tell whether
a COMMIT that timed out took effect: callers that must know rely on idempotent
retries (a send's `client_id`). Maintenance (migrations, exports) keeps the
connect bound only: a migration may rightly run one long statement.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from server.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
MAINTENANCE_LOCK_WAIT = 30.0  # seconds a migration waits for SQLite's write lock
# What a request that fails on the database raises: a driver error, no pooled
# connection in time, a network error or any timeout (TimeoutError is an OSError).
# The raw asyncpg paths (the group commit, the batched hello reads) raise the driver's own.
DATABASE_DOWN = (OperationalError, DBAPIError, PoolTimeout, OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


def create_engine(settings: Settings, *, maintenance: bool = False) -> AsyncEngine:
    timeout = settings.database_timeout.total_seconds()
    statements: float | None = None if maintenance else timeout
    if settings.is_sqlite:
        lock_wait = MAINTENANCE_LOCK_WAIT if maintenance else timeout
        engine = create_async_engine(settings.database_url, connect_args={"timeout": lock_wait})
        busy_ms = max(1, round(lock_wait * 1000))

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL lets readers run beside the single writer; NORMAL sync is durable
            # against process crashes, which is what "acked means stored" guards.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={busy_ms}")
            cur.close()

        return engine
    server_settings = {"application_name": "pomoc"}
    if settings.database_schema:
        server_settings["search_path"] = settings.database_schema
    return create_async_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_size,
        pool_timeout=timeout,
        pool_pre_ping=False,
        # `timeout` bounds connecting (TCP and the startup exchange), `command_timeout`
        # every statement asyncpg runs, including the COMMIT and ROLLBACK of a
        # transaction and the cancel request sent after a timeout.
        connect_args={"server_settings": server_settings, "timeout": timeout, "command_timeout": statements},
    )


class Pulse:
    """When the database last answered a statement (monotonic seconds).

    A request gives up on the database only once it has been silent that long: a
    node too busy to run a request quickly is not a database that hangs, and
    answering its clients `unavailable` would only bring their retries on top."""

    __slots__ = ("answered_at",)

    def __init__(self) -> None:
        self.answered_at = time.monotonic()

    def beat(self) -> None:
        self.answered_at = time.monotonic()

    def silent_for(self, since: float) -> float:
        """Seconds without an answer, counted from `since` at the earliest."""
        return time.monotonic() - max(self.answered_at, since)


def watch(engine: AsyncEngine) -> Pulse:
    """A pulse that beats whenever a statement through `engine` completes."""
    pulse = Pulse()

    def answered(*_: Any) -> None:
        pulse.beat()

    event.listen(engine.sync_engine, "after_cursor_execute", answered)
    return pulse


# Tells the process's metrics about a failed statement: (operation, error kind).
ErrorSink = Callable[[str, str], None]


def error_kind(exc: BaseException) -> str:
    """A failure as one of a few kinds (a metric's label): timeout, connection, refused, other."""
    if refused(exc):
        return "refused"
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TimeoutError | PoolTimeout) or type(current).__name__ in ("QueryCanceledError",):
            return "timeout"
        if isinstance(current, ConnectionError | OSError) or type(current).__name__ in (
                "ConnectionDoesNotExistError", "InterfaceError", "CannotConnectNowError"):
            return "connection"
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return "other"


def count_errors(engine: AsyncEngine, sink: ErrorSink) -> None:
    """Tell `sink` of every statement through `engine` that fails (and of failed
    connects), by the statement's first word; the raw group commit counts its own."""

    def failed(context: Any) -> None:
        statement = context.statement
        operation = statement.lstrip().split(None, 1)[0].lower() if statement and statement.strip() else "connect"
        kind = "connection" if context.is_disconnect else error_kind(context.original_exception)
        sink(operation, kind)

    event.listen(engine.sync_engine, "handle_error", failed)


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


def refused(exc: BaseException) -> bool:
    """Whether the database (or its driver) refused the data itself: a value it cannot
    store (NUL in PostgreSQL text, a string that is not valid Unicode, too long) or a
    broken constraint. Retrying the same row can only fail again; a database that is
    down or slow is not this."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, UnicodeError | DataError | IntegrityError):
            return True
        state = getattr(current, "sqlstate", None)
        if isinstance(state, str) and state[:2] in ("22", "23"):  # data exception, integrity violation
            return True
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return False


def describe(exc: BaseException) -> str:
    """A database failure named for a log line: its types and SQLSTATE, never the
    text of a statement's error, which may quote its values (a message body)."""
    parts = [type(exc).__name__]
    orig = getattr(exc, "orig", None)
    if isinstance(orig, BaseException) and type(orig).__name__ not in parts:
        parts.append(type(orig).__name__)
    cause = exc.__cause__ if exc.__cause__ is not None else orig
    for current in (exc, orig, cause):
        state = getattr(current, "sqlstate", None)
        if isinstance(state, str):
            parts.append(state)
            break
    if isinstance(exc, OSError) and str(exc):
        parts.append(str(exc).splitlines()[0][:200])  # a network error names no data
    return " ".join(parts)
