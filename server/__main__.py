"""Command line: `python -m server [serve|worker|migrate|token|…]`.

With no subcommand it serves in embedded mode (SQLite file, in-process Redis
stand-in, demo page), after applying migrations. Run `python -m server --help`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator, Sequence
from datetime import timedelta

import uvicorn

from server.logs import configure_logging
from server.settings import DEV_SECRET, Settings, SettingsError


def _settings() -> Settings:
    try:
        return Settings.from_env(os.environ)
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_serve(args: argparse.Namespace) -> int:
    from server.app import WIDGET_DIR, clock_for, create_app
    from server.auth import mint
    from server.db import migrate

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
    if settings.demo and (WIDGET_DIR / "demo.html").is_file():
        print(f"  demo shop with the widget: {base}/demo   agent console: {base}/agent", flush=True)
    print("  a token: python -m server token --role customer --sub u1 --shop s1 --shop-name 'My shop'", flush=True)
    if settings.secret == DEV_SECRET:
        demo_token = mint(settings.secret, role="agent", sub="agent-1", name="Demo agent", now=clock.now())
        print(f"  e.g. an agent token: {demo_token}", flush=True)
    config = uvicorn.Config(
        create_app(settings, clock), host=host, port=port,
        log_level="debug" if settings.log_level == "DEBUG" else "warning",
        ws_max_size=settings.max_frame_bytes, ws_ping_interval=20, ws_ping_timeout=20,
        timeout_graceful_shutdown=10, lifespan="on", access_log=False, log_config=None,
        proxy_headers=True, server_header=False,
    )
    server = GracefulServer(config)
    server.run()
    return 0


class GracefulServer(uvicorn.Server):
    """Closes Pomoc's sockets with 1001 (going away) before uvicorn's own shutdown
    would close them with 1012."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        app = self.config.loaded_app
        while app is not None and not hasattr(app, "state"):
            app = getattr(app, "app", None)
        node = getattr(getattr(app, "state", None), "node", None)
        if node is not None:
            for server in self.servers:
                server.close()  # no new connections while draining
            await node.drain()
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
    settings = _settings()
    print("the worker has no jobs in this version; the web process runs everything", file=sys.stderr)
    del settings
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from server.db import migrate

    settings = _settings()
    migrate(settings)
    print("database migrated to the latest revision")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from server.app import clock_for
    from server.auth import mint

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
        settings.secret, role=args.role, sub=args.sub, now=clock_for(settings).now(),
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"serve", "worker", "migrate", "token"}
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
