"""One explicit, frozen settings object, built from the environment in one function.

`Settings.from_env(os.environ)` is the only place that reads configuration; a bad
value fails at startup naming the variable. Everything else receives `Settings`
through constructors. With nothing set, Pomoc runs embedded: a SQLite file, the
in-process Redis stand-in, worker jobs inside the web process and the `/demo` page.

The support rules' own configuration (opening hours, reaction targets, fair-use
limits, departments, lifecycle durations) is kept here as the text the variable
holds and parsed by `server.rules.config.Rules.from_settings` at startup, which
names the variable on error too. Kernel module: standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

EMBEDDED_REDIS = "memory://"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///pomoc.db"
# A fixed development secret keeps tokens printed by `python -m server token` valid
# across restarts in embedded mode; any real deployment sets POMOC_SECRET.
DEV_SECRET = "pomoc-embedded-development-secret-change-me"
HELP_DIR = Path(__file__).resolve().parent.parent / "help"
RATE_VARIABLES = ("POMOC_RATE_USER_MESSAGES", "POMOC_RATE_SHOP_MESSAGES", "POMOC_RATE_SHOP_TICKETS",
                  "POMOC_RATE_SHOP_UPLOADS", "POMOC_RATE_AGENT_MESSAGES",
                  "POMOC_RATE_SHOP_DEFLECTIONS")

HTTP_IMPLEMENTATIONS = ("httptools", "h11")
WS_IMPLEMENTATIONS = ("websockets-sansio", "websockets", "wsproto")


class SettingsError(ValueError):
    """A configuration value is wrong; the message names the variable."""


def normalize_database_url(url: str) -> str:
    """Map the plain forms onto the async drivers SQLAlchemy needs."""
    if url.startswith("sqlite:"):
        return "sqlite+aiosqlite:" + url[len("sqlite:"):]
    for plain in ("postgresql:", "postgres:"):
        if url.startswith(plain):
            return "postgresql+asyncpg:" + url[len(plain):]
    return url


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str = EMBEDDED_REDIS
    secret: str = DEV_SECRET
    allowed_origins: tuple[str, ...] = ("*",)
    host: str = "127.0.0.1"
    port: int = 8000
    # Prefix of every Redis key and channel, so several deployments (or test runs)
    # can share one Redis.
    redis_prefix: str = "pomoc:"
    # The deadline of every Redis call; past it the node goes on as if Redis were down.
    redis_timeout: timedelta = timedelta(seconds=1)
    database_schema: str | None = None
    database_pool_size: int = 10
    # The longest the database may take to connect, run a statement or commit before
    # the request is answered `unavailable` (a hung database must not hang clients).
    database_timeout: timedelta = timedelta(seconds=5)
    clock_start: datetime | None = None
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Europe/Warsaw"))
    hello_timeout: timedelta = timedelta(seconds=10)
    max_frame_bytes: int = 64 * 1024
    max_body_chars: int = 10_000
    max_title_chars: int = 200
    history_page_max: int = 200
    resume_max: int = 1000
    # Outbound frames a connection may have queued before it is closed with 1013.
    send_queue_max: int = 1000
    # Bad frames tolerated on one connection before it is closed (abuse, not mistakes).
    max_bad_frames: int = 1000
    bad_frame_window: timedelta = timedelta(seconds=10)
    welcome_tickets_max: int = 500
    inbox_page: int = 50  # an agent's welcome and list_tickets: the most urgent first, `more` for the rest
    # A killed node's agents go offline after presence_ttl plus one heartbeat at most.
    presence_ttl: timedelta = timedelta(seconds=30)
    heartbeat_interval: timedelta = timedelta(seconds=10)
    hours: str = ""
    closed_dates: str = ""
    open_dates: str = ""
    sla_targets: str = ""
    sla_warnings: str = ""
    plans: str = ""  # POMOC_PLANS (server.rules.plans)
    same_day_cutoff: str = ""  # POMOC_SAME_DAY_CUTOFF, e.g. "16:00"; empty: no same-day rule
    webhook_url: str | None = None
    webhook_secret: str = ""
    # Mail and SMS (docs/notifications.md): SMTP (none: the local mailbox), the sender,
    # how long an agent's reply stays unread before it is mailed, the links in mails,
    # and the on-call team's addresses, phones and SMS gateway.
    smtp_url: str | None = None
    mail_from: str = "Pomoc <no-reply@localhost>"
    mail_delay: timedelta = timedelta(minutes=2)
    panel_url: str = ""
    public_url: str = ""
    oncall_emails: tuple[str, ...] = ()
    oncall_phones: tuple[str, ...] = ()
    sms_url: str | None = None
    sms_gateway: str = "pomoc"
    sms_token: str = ""
    sms_from: str = ""
    jobs_interval: timedelta = timedelta(seconds=5)
    # Assignment: new and released tickets to the least loaded online agent of their
    # department (off by default), at most `agent_capacity` open tickets each; with it
    # on, an assignee offline longer than `assign_release_after` loses its open tickets
    # to the pool.
    auto_assign: bool = False
    agent_capacity: int = 8
    assign_release_after: timedelta = timedelta(minutes=15)
    silent_reminders: str = ""
    silent_resolve: str = ""
    resolved_close: str = ""
    retention: str = ""
    purge_batch: int = 10_000
    # Fair-use limits as configured ("30/10s", "off"; empty: the default), per POMOC_RATE_* variable.
    rate_limits: tuple[tuple[str, str], ...] = ()
    max_user_connections: int = 20
    attachments_dir: Path = Path("attachments")
    attachment_max_bytes: int = 10 * 1024 * 1024
    attachments_per_message: int = 10
    attachment_link_ttl: timedelta = timedelta(minutes=10)
    attachment_max_pixels: int = 40_000_000
    attachment_unsent_ttl: timedelta = timedelta(hours=24)
    # Images are decoded in child processes: at most this many at once per node, each
    # within this address space and CPU time (server.store.imagecheck).
    image_checks: int = 2
    image_check_memory: int = 384 * 1024 * 1024
    image_check_cpu: timedelta = timedelta(seconds=10)
    help_dir: Path = HELP_DIR
    departments: str = ""
    default_department: str = "technical"
    max_connections: int = 10_000
    # Connections not yet identified by a hello's token: the node's budget (beyond it the
    # oldest is closed with 1013) and each client address's (beyond it: 503 before the upgrade).
    max_pending: int = 1000
    max_pending_per_address: int = 100
    # Seconds a client has to complete a request's head (then 408 and close).
    handshake_timeout: timedelta = timedelta(seconds=5)
    # Seconds a closing connection gets to take its last frames and the close frame
    # (a peer that does not read them is then cut off without one).
    close_grace: timedelta = timedelta(seconds=10)
    # Proxies whose X-Forwarded-For names the client (uvicorn's forwarded_allow_ips).
    forwarded_allow_ips: str = "127.0.0.1,::1"
    # uvicorn's HTTP and WebSocket implementations (docs/performance.md, "Server stack").
    uvicorn_http: str = "httptools"
    uvicorn_ws: str = "websockets-sansio"
    # Group-commit batches in flight per node. One is as fast on a local PostgreSQL
    # (measured); more helps when commits wait on a remote database.
    writer_concurrency: int = 1
    # Tickets whose rows the group commit believes it knows, so that a batch is one
    # statement (docs/performance.md, "Third pass"); 0: every batch locks first.
    writer_beliefs: int = 4096
    # Hellos a node works on at once up to their welcome; the rest wait their turn in
    # order (docs/performance.md, "Reconnect storm"): a storm does not starve the sends
    # nor push every Redis call of the node past its deadline.
    hello_concurrency: int = 32
    # Rate-limited answers a connection may collect within a minute before it is closed (4429).
    max_rate_limited: int = 50
    run_jobs_in_web: bool = True
    # /metrics: the bearer token a scrape must carry (none: open), and the worker's own port (none: not served).
    metrics_token: str | None = None
    worker_metrics_port: int | None = None
    demo: bool = True
    # POMOC_DEMO on a real database or Redis hands anyone an agent token: refused
    # unless this loudly named override says so.
    demo_on_real_data: bool = False
    log_level: str = "INFO"

    @property
    def public_base(self) -> str:
        """Where browsers reach this deployment (unsubscribe links); POMOC_PUBLIC_URL
        or, unset, the address `serve` listens on."""
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def embedded_redis(self) -> bool:
        return self.redis_url == EMBEDDED_REDIS

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def embedded_data(self) -> bool:
        """A SQLite file and the in-process Redis stand-in: one machine's own data."""
        return self.is_sqlite and self.embedded_redis

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        def text(name: str, default: str) -> str:
            value = env.get(name, "").strip()
            return value or default

        def integer(name: str, default: int, minimum: int = 0) -> int:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
            if value < minimum:
                raise SettingsError(f"{name} must be at least {minimum}, got {value}")
            return value

        def seconds(name: str, default: timedelta) -> timedelta:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
            if value <= 0:
                raise SettingsError(f"{name} must be positive, got {raw!r}")
            return timedelta(seconds=value)

        def choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
            value = text(name, default).lower()
            if value not in allowed:
                raise SettingsError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
            return value

        def flag(name: str, default: bool) -> bool:
            raw = env.get(name, "").strip().lower()
            if not raw:
                return default
            if raw in ("1", "true", "yes", "on"):
                return True
            if raw in ("0", "false", "no", "off"):
                return False
            raise SettingsError(f"{name} must be true or false, got {raw!r}")

        database_url = normalize_database_url(text("DATABASE_URL", DEFAULT_DATABASE_URL))
        if not database_url.startswith(("sqlite+aiosqlite:", "postgresql+asyncpg:")):
            raise SettingsError(
                "DATABASE_URL must be sqlite[+aiosqlite]:///FILE or postgresql[+asyncpg]://…, "
                f"got {database_url.split('://')[0]}://…"
            )
        redis_url = text("REDIS_URL", EMBEDDED_REDIS)
        if not redis_url.startswith(("redis://", "rediss://", "unix://", EMBEDDED_REDIS)):
            raise SettingsError(f"REDIS_URL must be redis://…, rediss://… or {EMBEDDED_REDIS}")
        origins = tuple(o.strip().rstrip("/") for o in text("POMOC_ALLOWED_ORIGINS", "*").split(",") if o.strip())
        clock_raw = env.get("POMOC_CLOCK", "").strip()
        clock_start = None
        if clock_raw:
            try:
                clock_start = datetime.fromisoformat(clock_raw)
            except ValueError:
                raise SettingsError(f"POMOC_CLOCK must be an ISO 8601 instant, got {clock_raw!r}") from None
            if clock_start.tzinfo is None:
                raise SettingsError("POMOC_CLOCK must carry a UTC offset, e.g. 2026-11-25T10:00:00+01:00")
        tz_name = text("POMOC_TIMEZONE", "Europe/Warsaw")
        try:
            tz = ZoneInfo(tz_name)
        except (KeyError, ValueError):
            raise SettingsError(f"POMOC_TIMEZONE {tz_name!r} is not a known time zone") from None
        schema = env.get("POMOC_DATABASE_SCHEMA", "").strip() or None
        if schema is not None and not schema.replace("_", "").isalnum():
            raise SettingsError("POMOC_DATABASE_SCHEMA may hold only letters, digits and underscores")
        secret = env.get("POMOC_SECRET", "")
        embedded = redis_url == EMBEDDED_REDIS and database_url == DEFAULT_DATABASE_URL
        if not secret:
            if not embedded:
                raise SettingsError("POMOC_SECRET must be set when DATABASE_URL or REDIS_URL is set")
            secret = DEV_SECRET
        if len(secret) < 16 and not embedded:
            raise SettingsError("POMOC_SECRET must be at least 16 characters")
        rate_limits = tuple((var, env[var].strip()) for var in RATE_VARIABLES if env.get(var, "").strip())
        webhook_url = env.get("POMOC_WEBHOOK_URL", "").strip() or None
        if webhook_url and not webhook_url.startswith(("http://", "https://")):
            raise SettingsError("POMOC_WEBHOOK_URL must be an http:// or https:// URL")
        worker_metrics_port = integer("POMOC_WORKER_METRICS_PORT", 0, minimum=1)
        if worker_metrics_port > 65535:
            raise SettingsError(f"POMOC_WORKER_METRICS_PORT must be a port (1-65535), got {worker_metrics_port}")
        settings = cls(
            database_url=database_url,
            redis_url=redis_url,
            secret=secret,
            allowed_origins=origins or ("*",),
            host=text("HOST", "127.0.0.1"),
            port=integer("PORT", 8000, minimum=1),
            redis_prefix=text("POMOC_REDIS_PREFIX", "pomoc:"),
            redis_timeout=seconds("POMOC_REDIS_TIMEOUT", timedelta(seconds=1)),
            database_schema=schema,
            database_pool_size=integer("POMOC_DATABASE_POOL_SIZE", 10, minimum=1),
            database_timeout=seconds("POMOC_DATABASE_TIMEOUT", timedelta(seconds=5)),
            clock_start=clock_start,
            timezone=tz,
            hello_timeout=seconds("POMOC_HELLO_TIMEOUT", timedelta(seconds=10)),
            max_body_chars=integer("POMOC_MAX_BODY_CHARS", 10_000, minimum=1),
            send_queue_max=integer("POMOC_SEND_QUEUE_MAX", 1000, minimum=10),
            welcome_tickets_max=integer("POMOC_WELCOME_TICKETS_MAX", 500, minimum=1),
            inbox_page=integer("POMOC_INBOX_PAGE", 50, minimum=1),
            presence_ttl=seconds("POMOC_PRESENCE_TTL", timedelta(seconds=30)),
            heartbeat_interval=seconds("POMOC_HEARTBEAT", timedelta(seconds=10)),
            hours=env.get("POMOC_HOURS", ""),
            closed_dates=env.get("POMOC_CLOSED_DATES", ""),
            open_dates=env.get("POMOC_OPEN_DATES", ""),
            sla_targets=env.get("POMOC_SLA", ""),
            sla_warnings=env.get("POMOC_SLA_WARNING", ""),
            plans=env.get("POMOC_PLANS", ""),
            same_day_cutoff=env.get("POMOC_SAME_DAY_CUTOFF", ""),
            webhook_url=webhook_url,
            webhook_secret=env.get("POMOC_WEBHOOK_SECRET", "") or secret,
            **_notification_settings(env, seconds),
            jobs_interval=seconds("POMOC_JOBS_INTERVAL", timedelta(seconds=5)),
            auto_assign=flag("POMOC_AUTO_ASSIGN", False),
            agent_capacity=integer("POMOC_AGENT_CAPACITY", 8, minimum=1),
            assign_release_after=seconds("POMOC_ASSIGN_RELEASE_AFTER", timedelta(minutes=15)),
            silent_reminders=env.get("POMOC_SILENT_REMINDERS", ""),
            silent_resolve=env.get("POMOC_SILENT_RESOLVE", ""),
            resolved_close=env.get("POMOC_RESOLVED_CLOSE", ""),
            retention=env.get("POMOC_RETENTION", ""),
            purge_batch=integer("POMOC_PURGE_BATCH", 10_000, minimum=100),
            rate_limits=rate_limits,
            max_user_connections=integer("POMOC_MAX_USER_CONNECTIONS", 20, minimum=1),
            attachments_dir=Path(text("POMOC_ATTACHMENTS_DIR", "attachments")),
            attachment_max_bytes=integer("POMOC_ATTACHMENT_MAX_BYTES", 10 * 1024 * 1024, minimum=1024),
            attachments_per_message=integer("POMOC_ATTACHMENTS_PER_MESSAGE", 10, minimum=1),
            attachment_link_ttl=seconds("POMOC_ATTACHMENT_LINK_TTL", timedelta(minutes=10)),
            attachment_max_pixels=integer("POMOC_ATTACHMENT_MAX_PIXELS", 40_000_000, minimum=1),
            attachment_unsent_ttl=seconds("POMOC_ATTACHMENT_UNSENT_TTL", timedelta(hours=24)),
            image_checks=integer("POMOC_IMAGE_CHECKS", 2, minimum=1),
            image_check_memory=integer("POMOC_IMAGE_CHECK_MEMORY", 384 * 1024 * 1024, minimum=64 * 1024 * 1024),
            image_check_cpu=seconds("POMOC_IMAGE_CHECK_CPU", timedelta(seconds=10)),
            help_dir=Path(text("POMOC_HELP_DIR", str(HELP_DIR))),
            departments=env.get("POMOC_DEPARTMENTS", ""),
            default_department=text("POMOC_DEFAULT_DEPARTMENT", "technical"),
            max_connections=integer("POMOC_MAX_CONNECTIONS", 10_000, minimum=1),
            max_pending=integer("POMOC_MAX_PENDING", 1000, minimum=1),
            max_pending_per_address=integer("POMOC_MAX_PENDING_PER_ADDRESS", 100, minimum=1),
            handshake_timeout=seconds("POMOC_HANDSHAKE_TIMEOUT", timedelta(seconds=5)),
            close_grace=seconds("POMOC_CLOSE_GRACE", timedelta(seconds=10)),
            # uvicorn's own variable still works, as it did before Pomoc had one.
            forwarded_allow_ips=text("POMOC_FORWARDED_ALLOW_IPS", text("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")),
            uvicorn_http=choice("POMOC_UVICORN_HTTP", "httptools", HTTP_IMPLEMENTATIONS),
            uvicorn_ws=choice("POMOC_UVICORN_WS", "websockets-sansio", WS_IMPLEMENTATIONS),
            writer_concurrency=integer("POMOC_WRITER_CONCURRENCY", 1, minimum=1),
            writer_beliefs=integer("POMOC_WRITER_BELIEFS", 4096, minimum=0),
            hello_concurrency=integer("POMOC_HELLO_CONCURRENCY", 32, minimum=1),
            max_rate_limited=integer("POMOC_MAX_RATE_LIMITED", 50, minimum=1),
            run_jobs_in_web=flag("POMOC_JOBS_IN_WEB", embedded),
            metrics_token=env.get("POMOC_METRICS_TOKEN", "").strip() or None,
            worker_metrics_port=worker_metrics_port or None,
            demo=flag("POMOC_DEMO", embedded),
            demo_on_real_data=flag("POMOC_DEMO_ON_REAL_DATA", False),
            log_level=text("POMOC_LOG_LEVEL", "INFO").upper(),
        )
        if settings.demo and not settings.embedded_data and not settings.demo_on_real_data:
            raise SettingsError(
                "POMOC_DEMO is on with a real database or Redis (DATABASE_URL / REDIS_URL): the demo hands "
                "anyone an agent token at /demo/token. Turn POMOC_DEMO off, or set "
                "POMOC_DEMO_ON_REAL_DATA=1 if this really is a throwaway demo deployment")
        return settings


_ADDRESS = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+")
_PHONE = re.compile(r"\+?[0-9]{6,15}")
SMS_GATEWAYS = ("pomoc", "smsapi")


def _notification_settings(env: Mapping[str, str], seconds: Callable[[str, timedelta], timedelta]
                           ) -> dict[str, Any]:
    """The mail and SMS block of `from_env` (POMOC_SMTP_URL … POMOC_SMS_FROM)."""
    def url(name: str, schemes: tuple[str, ...]) -> str | None:
        value = env.get(name, "").strip() or None
        if value is not None and (not value.startswith(schemes) or not urlsplit(value).hostname
                                  or not value.isascii()):
            raise SettingsError(f"{name} must be a {' or '.join(s + '//host…' for s in schemes)} URL")
        return value

    smtp_url = url("POMOC_SMTP_URL", ("smtp:", "smtps:"))
    mail_from = env.get("POMOC_MAIL_FROM", "").strip() or "Pomoc <no-reply@localhost>"
    _, address = parseaddr(mail_from)
    if not _ADDRESS.fullmatch(address) or any(c in mail_from for c in "\r\n"):
        raise SettingsError(f"POMOC_MAIL_FROM must be an address like 'Pomoc <no-reply@shop.example>', "
                            f"got {mail_from!r}")
    panel_url = url("POMOC_PANEL_URL", ("http:", "https:")) or ""
    if panel_url and "{ticket}" not in panel_url:
        raise SettingsError("POMOC_PANEL_URL must contain {ticket}, e.g. https://panel.example/pomoc?ticket={ticket}")
    public_url = (url("POMOC_PUBLIC_URL", ("http:", "https:")) or "").rstrip("/")
    emails = tuple(e.strip() for e in env.get("POMOC_ONCALL_EMAILS", "").split(",") if e.strip())
    for email in emails:
        if not _ADDRESS.fullmatch(email):
            raise SettingsError(f"POMOC_ONCALL_EMAILS: {email!r} is not an e-mail address")
    phones = tuple(p.strip().replace(" ", "") for p in env.get("POMOC_ONCALL_PHONES", "").split(",") if p.strip())
    for phone in phones:
        if not _PHONE.fullmatch(phone):
            raise SettingsError(f"POMOC_ONCALL_PHONES: {phone!r} is not a phone number (digits, optional +)")
    gateway = env.get("POMOC_SMS_GATEWAY", "").strip().lower() or "pomoc"
    if gateway not in SMS_GATEWAYS:
        raise SettingsError(f"POMOC_SMS_GATEWAY must be one of {', '.join(SMS_GATEWAYS)}, got {gateway!r}")
    sms_url = url("POMOC_SMS_URL", ("http:", "https:"))
    token = env.get("POMOC_SMS_TOKEN", "").strip()
    if gateway == "smsapi":
        sms_url = sms_url or "https://api.smsapi.pl/sms.do"
        if not token:
            raise SettingsError("POMOC_SMS_TOKEN must be set for POMOC_SMS_GATEWAY=smsapi (an SMSAPI OAuth token)")
    if phones and not sms_url:
        raise SettingsError("POMOC_ONCALL_PHONES needs POMOC_SMS_URL (or POMOC_SMS_GATEWAY=smsapi)")
    return {"smtp_url": smtp_url, "mail_from": mail_from, "panel_url": panel_url, "public_url": public_url,
            "mail_delay": seconds("POMOC_MAIL_DELAY", timedelta(minutes=2)),
            "oncall_emails": emails, "oncall_phones": phones, "sms_url": sms_url, "sms_gateway": gateway,
            "sms_token": token, "sms_from": env.get("POMOC_SMS_FROM", "").strip()}
