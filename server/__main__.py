"""Command line: `python -m server [serve|worker|migrate|token|…]`.

With no subcommand it serves in embedded mode (SQLite file, in-process Redis
stand-in, demo page), after applying migrations. Run `python -m server --help`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import resource
import signal
import socket
import sys
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import uvicorn

from server.logs import configure_logging
from server.rules.config import Rules
from server.settings import DEV_SECRET, Settings, SettingsError

log = logging.getLogger(__name__)


def _settings() -> Settings:
    """The settings, with the support rules they configure checked too."""
    try:
        settings = Settings.from_env(os.environ)
        Rules.from_settings(settings)
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return settings


def cmd_serve(args: argparse.Namespace) -> int:
    from server.store.db import migrate
    from server.web.app import WIDGET_DIR, ExtraTask, clock_for, create_app
    from server.web.stack import uvicorn_config
    from server.web.tokens import mint

    settings = _settings()
    host = args.host or settings.host
    port = args.port or settings.port
    settings = settings.with_(host=host, port=port)
    if settings.is_sqlite or args.migrate:
        migrate(settings)
    clock = clock_for(settings)
    base = f"http://{host}:{port}"
    print(f"Pomoc listening on {base}  (WebSocket {base.replace('http', 'ws', 1)}/ws)", flush=True)
    print(f"  database: {settings.database_url.split('@')[-1]}   redis: "
          f"{'in-process stand-in' if settings.embedded_redis else settings.redis_url.split('@')[-1]}", flush=True)
    if settings.demo and not settings.embedded_data:
        # Allowed only by POMOC_DEMO_ON_REAL_DATA (settings refuse it otherwise): say so loudly.
        log.warning("demo.on_real_data", extra={
            "variable": "POMOC_DEMO_ON_REAL_DATA",
            "detail": "the demo is on with a real database or Redis: /demo/token hands anyone an agent token"})
    if settings.demo and (WIDGET_DIR / "demo.html").is_file():
        print(f"  demo shop with the widget: {base}/demo   agent console: {base}/agent", flush=True)
    print("  a token: python -m server token --role customer --sub u1 --shop s1 --shop-name 'My shop'", flush=True)
    if settings.secret == DEV_SECRET:
        demo_token = mint(settings.secret, role="agent", sub="agent-1", name="Demo agent", now=datetime.now(UTC))
        print(f"  e.g. an agent token: {demo_token}", flush=True)
        print(f"  the console signed in with it: {base}/agent#token={demo_token}", flush=True)
    extra: list[ExtraTask] = [_run_jobs] if settings.run_jobs_in_web else []
    try:
        config = uvicorn_config(create_app(settings, clock, extra_tasks=extra), settings)
    except ImportError as exc:
        print(f"configuration error: POMOC_UVICORN_WS={settings.uvicorn_ws} needs {exc.name}", file=sys.stderr)
        return 2
    raise_fd_limit()
    server = GracefulServer(config)
    server.run()
    return 0


def raise_fd_limit() -> None:
    """Every socket is a file descriptor: the soft limit goes up to the hard one, so a
    flood of connections meets the connection budgets, not EMFILE."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if want > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError) as exc:
            logging.getLogger(__name__).warning("serve.fd_limit", extra={"soft": soft, "error": str(exc)})


async def _run_jobs(a: Any) -> None:
    """The background jobs and the search indexer: in the worker, or inside the web
    process (embedded mode, POMOC_JOBS_IN_WEB). A web node that serves sockets does
    not fold the words of every message it did not even write."""
    from server.store.search import SearchIndexer
    from server.worker.jobs import Jobs

    jobs = Jobs(a)
    indexer = asyncio.ensure_future(SearchIndexer(a.engine).run())
    try:
        await jobs.run_forever()
    finally:
        indexer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await indexer
        await jobs.aclose()


class GracefulServer(uvicorn.Server):
    """Closes Pomoc's sockets with 1001 (going away) before uvicorn's own shutdown
    would close them with 1012."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        app = self.config.loaded_app
        while app is not None and not hasattr(app, "state"):
            app = getattr(app, "app", None)
        adapters = getattr(getattr(app, "state", None), "adapters", None)
        if adapters is not None:
            for server in self.servers:
                server.close()  # no new connections while draining
            await adapters.roster.drain()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises SIGTERM after its shutdown, so the process would end "killed
        # by signal"; Pomoc drains cleanly first and then exits with status 0.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def cmd_worker(args: argparse.Namespace) -> int:
    from server.chat.runtime import running
    from server.web.app import clock_for

    settings = _settings()
    listening: socket.socket | None = None
    if settings.worker_metrics_port is not None:
        # Bound before anything starts: a port that is taken stops the worker with the
        # reason instead of leaving it running unobserved.
        host, port = settings.host, settings.worker_metrics_port
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
            listening = socket.create_server((host, port), family=family)
        except OSError as exc:
            print(f"configuration error: POMOC_WORKER_METRICS_PORT: cannot listen on {host}:{port}: {exc}",
                  file=sys.stderr)
            return 2

    async def work() -> None:
        async with running(settings, clock_for(settings)) as a:
            if listening is None:
                await _run_jobs(a)
                return
            async with _worker_metrics(a, listening):
                await _run_jobs(a)

    print(f"Pomoc worker: jobs every {settings.jobs_interval.total_seconds():g} s", flush=True)
    if listening is not None:
        print(f"  metrics: http://{settings.host}:{settings.worker_metrics_port}/metrics", flush=True)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_until_signalled(work()))
    finally:
        if listening is not None:
            listening.close()
    return 0


class _QuietServer(uvicorn.Server):
    """A uvicorn server inside a process that handles its own signals (the worker)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def _worker_metrics(a: Any, listening: socket.socket) -> AsyncIterator[None]:
    """The worker's `/metrics` on its own socket, for as long as the block runs."""
    from server.chat.scrape import Scrape
    from server.web import metrics_api

    config = uvicorn.Config(metrics_api.app(Scrape(a), a.settings.metrics_token), lifespan="off",
                            log_config=None, access_log=False, server_header=False)
    server = _QuietServer(config)
    task = asyncio.ensure_future(server.serve(sockets=[listening]))
    try:
        yield
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _until_signalled(work: Coroutine[Any, Any, None]) -> None:
    """Run until the work ends or SIGTERM/SIGINT arrives, then cancel it cleanly."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _instant(text: str | None, settings: Settings) -> datetime:
    if text is None:
        from server.web.app import clock_for

        return clock_for(settings).now()
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"--at must be an ISO 8601 instant, got {text!r}") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=settings.timezone)  # a local Polish time, as people write it
    return at.astimezone(UTC)


def cmd_jobs(args: argparse.Namespace) -> int:
    from server.chat.runtime import running
    from server.clock import FixedClock
    from server.worker.jobs import Jobs

    settings = _settings()
    at = _instant(args.at, settings)

    async def once() -> dict[str, int]:
        async with running(settings, FixedClock(at)) as a:
            jobs = Jobs(a)
            try:
                return await jobs.run_once(at)
            finally:
                await jobs.aclose()

    done = asyncio.run(once())
    print(json.dumps({"at": at.isoformat(), "done": done}, ensure_ascii=False))
    return 1 if any(v < 0 for v in done.values()) else 0


def cmd_purge(args: argparse.Namespace) -> int:
    from server.chat.runtime import running
    from server.clock import FixedClock
    from server.worker.retention import purge

    settings = _settings()
    at = _instant(args.at, settings)

    async def run() -> dict[str, Any]:
        async with running(settings, FixedClock(at)) as a:
            plan = await a.lifecycle.plan_purge(at)
            summary = plan.summary()
            if not args.dry_run:
                summary["deleted_messages"] = await purge(a, plan)
            return summary

    summary = asyncio.run(run())
    print(json.dumps({"at": at.isoformat(), "dry_run": args.dry_run, **summary}, ensure_ascii=False))
    return 0


def cmd_export_shop(args: argparse.Namespace) -> int:
    from server.store.db import create_engine
    from server.store.lifecycle import Lifecycle

    settings = _settings()

    async def run() -> dict[str, Any]:
        engine = create_engine(settings, maintenance=True)
        try:
            return await Lifecycle(engine, Rules.from_settings(settings).lifecycle).export_shop(args.shop)
        finally:
            await engine.dispose()

    data = asyncio.run(run())
    if not data:
        print(f"no shop {args.shop!r}", file=sys.stderr)
        return 1
    text = json.dumps(data, ensure_ascii=False, indent=2, default=str)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as out:
            out.write(text + "\n")
    else:
        print(text)
    return 0


def cmd_erase_shop(args: argparse.Namespace) -> int:
    from server.chat.runtime import running
    from server.worker.retention import purge

    settings = _settings()
    if not args.yes:
        print(f"this deletes every ticket, message and file of shop {args.shop!r} for good; "
              "run again with --yes to confirm", file=sys.stderr)
        return 2

    async def run() -> dict[str, Any]:
        async with running(settings, _clock(settings)) as a:
            plan = await a.lifecycle.plan_purge(a.clock.now(), shop=args.shop)
            deleted = await purge(a, plan)
            await a.lifecycle.erase_shop_rows(args.shop)
            return {"shop": args.shop, "tickets": len(plan.tickets), "messages": deleted}

    print(json.dumps(asyncio.run(run()), ensure_ascii=False))
    return 0


def _clock(settings: Settings) -> Any:
    from server.web.app import clock_for

    return clock_for(settings)


def cmd_sla(args: argparse.Namespace) -> int:
    from server.rules.sla import format_due

    settings = _settings()
    policy = Rules.from_settings(settings).policy
    at = _instant(args.at, settings)
    due = policy.due(args.severity, at)
    held = policy.hold(args.severity, at)
    print(json.dumps({
        "severity": args.severity, "opened_at": at.isoformat(), "sla_due_at": due.isoformat(),
        "due_local": format_due(due, policy.calendar), "warning_at": policy.warning(args.severity, at).isoformat(),
        "queued_until": held.isoformat() if held else None,
    }, ensure_ascii=False))
    return 0


def cmd_calendar(args: argparse.Namespace) -> int:
    from server.rules.calendar import day_schedule

    settings = _settings()
    policy = Rules.from_settings(settings).policy
    try:
        # Today is today in the support calendar's zone, not UTC's (an hour or two apart after midnight).
        first = (date.fromisoformat(args.from_date) if args.from_date
                 else _instant(None, settings).astimezone(settings.timezone).date())
    except ValueError:
        raise SystemExit(f"--from must be a date (YYYY-MM-DD), got {args.from_date!r}") from None
    if not 1 <= args.days <= 3660:
        raise SystemExit("--days must be between 1 and 3660")
    names = ("pon", "wt", "śr", "czw", "pt", "sob", "nd")
    for offset in range(args.days):
        day = first + timedelta(days=offset)
        schedule = day_schedule(policy.calendar, day)
        hours = (f"{schedule.opens:%H:%M}-{schedule.closes:%H:%M}" if schedule.is_open and schedule.opens
                 and schedule.closes else "zamknięte")
        reason = f"  ({schedule.reason})" if schedule.reason else ""
        print(f"{day.isoformat()} {names[day.weekday()]:<4} {hours}{reason}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from server.store.db import migrate

    settings = _settings()
    migrate(settings)
    print("database migrated to the latest revision")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from server.web.tokens import mint

    settings = _settings()
    if args.role == "customer" and not args.shop:
        print("a customer token needs --shop", file=sys.stderr)
        return 2
    if args.role == "agent" and not args.name:
        args.name = args.sub
    if args.ttl <= 0:
        print("--ttl must be positive", file=sys.stderr)
        return 2
    token = mint(
        settings.secret, role=args.role, sub=args.sub, now=datetime.now(UTC),  # tokens live on real time
        ttl=timedelta(seconds=args.ttl), shop=args.shop, shop_name=args.shop_name or args.shop,
        plan=args.plan if args.role == "customer" else None, name=args.name, email=args.email,
        departments=args.department or None,
    )
    print(token)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m server",
        description="Pomoc: real-time support chat. With no command: serve (embedded defaults).",
        epilog="Configuration comes from the environment: DATABASE_URL, REDIS_URL, POMOC_SECRET, "
               "POMOC_ALLOWED_ORIGINS, PORT, POMOC_CLOCK, … (see README).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the web server (WebSocket /ws, HTTP API, widget)")
    serve.add_argument("--host", help="interface to listen on (default 127.0.0.1 or $HOST)")
    serve.add_argument("--port", type=int, help="port (default 8000 or $PORT)")
    serve.add_argument("--migrate", action="store_true",
                       help="apply migrations before serving (always done on SQLite)")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run the background jobs (queue release, SLA, reminders, purge)")
    worker.set_defaults(func=cmd_worker)

    mig = sub.add_parser("migrate", help="apply database migrations (the Procfile's release step)")
    mig.set_defaults(func=cmd_migrate)

    token = sub.add_parser("token", help="print a signed token for a customer or an agent")
    token.add_argument("--role", required=True, choices=["customer", "agent"])
    token.add_argument("--sub", required=True, help="user id (customer) or agent id")
    token.add_argument("--shop", help="shop id (customers)")
    token.add_argument("--shop-name", help="shop display name (customers)")
    token.add_argument("--plan", default="standard", choices=["trial", "standard", "priority"])
    token.add_argument("--name", help="display name (required claim for agents; defaults to --sub)")
    token.add_argument("--email")
    token.add_argument("--department", action="append", help="agent's department key (repeatable)")
    token.add_argument("--ttl", type=int, default=12 * 3600, help="seconds until the token expires")
    token.set_defaults(func=cmd_token)

    jobs = sub.add_parser("jobs", help="run every due job once (queue release, escalations, webhook)")
    jobs.add_argument("--once", action="store_true", required=True, help="run once and exit (required)")
    jobs.add_argument("--at", help="as of this instant (ISO 8601; without an offset: Warsaw local time)")
    jobs.set_defaults(func=cmd_jobs)

    sla = sub.add_parser("sla", help="print the reaction deadline of a ticket opened at an instant")
    sla.add_argument("--severity", required=True, choices=["critical", "major", "minor", "question", "suggestion"])
    sla.add_argument("--at", help="when the ticket is opened (ISO 8601; default: now)")
    sla.set_defaults(func=cmd_sla)

    purge_cmd = sub.add_parser("purge", help="delete closed tickets past retention (files and Redis keys too)")
    purge_cmd.add_argument("--dry-run", action="store_true", help="only print what would go")
    purge_cmd.add_argument("--at", help="as of this instant (ISO 8601; default: now)")
    purge_cmd.set_defaults(func=cmd_purge)

    export = sub.add_parser("export-shop", help="write a shop's tickets and messages as JSON (privacy request)")
    export.add_argument("shop")
    export.add_argument("--out", help="file to write (default: standard output)")
    export.set_defaults(func=cmd_export_shop)

    erase = sub.add_parser("erase-shop", help="delete a shop's tickets, messages and files everywhere")
    erase.add_argument("shop")
    erase.add_argument("--yes", action="store_true", help="confirm the erasure")
    erase.set_defaults(func=cmd_erase_shop)

    cal = sub.add_parser("calendar", help="print the opening hours of each day, with the reason for closed days")
    cal.add_argument("--from", dest="from_date", help="first day (YYYY-MM-DD; default: today)")
    cal.add_argument("--days", type=int, default=14, help="how many days (default 14)")
    cal.set_defaults(func=cmd_calendar)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"serve", "worker", "migrate", "token", "jobs", "sla", "calendar", "purge", "export-shop",
                "erase-shop"}
    if not argv or (argv[0] not in commands and argv[0] not in ("-h", "--help")):
        argv = ["serve", *argv]  # `python -m server [--port P]` serves
    args = parser.parse_args(argv)
    configure_logging(os.environ.get("POMOC_LOG_LEVEL", "INFO"))
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    logging.captureWarnings(True)
    raise SystemExit(main())
