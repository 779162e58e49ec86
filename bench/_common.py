"""Shared plumbing for the bench tools: services, server processes, tokens, a client.

Run with the project's interpreter (`.venv/bin/python bench/<tool>.py`). Nothing here
imports the `server` package: the tools treat Pomoc as a black box, exactly like the
peer harness (python -m server migrate / serve, PROTOCOL.md over /ws), and use the
database only to seed data and to create/drop their own databases.

Every tool uses its own database (`pbench_<tool>_<pid>_<time>`) and its own Redis key
prefix (`pbench-<tool>-<pid>:`), and removes both at the end (unless --keep).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import orjson

ROOT = Path(__file__).resolve().parent.parent
SUBPROTOCOL = "pomoc.v1.json"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
UNLIMITED_PENDING = 1_000_000


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ arguments
RATE_LIMITS_OFF = {f"POMOC_RATE_{n}": "off" for n in ("USER_MESSAGES", "SHOP_MESSAGES", "SHOP_TICKETS",
                                                       "SHOP_UPLOADS", "AGENT_MESSAGES")}


def add_service_args(p: argparse.ArgumentParser, rate_limits: str = "on") -> None:
    p.add_argument("--rate-limits", choices=("on", "off"), default=rate_limits,
                   help="server rate limits as configured by default (on) or all POMOC_RATE_*=off "
                        "(default here: %(default)s)")
    p.add_argument("--pg", default=os.environ.get("PBENCH_PG", DEFAULT_PG),
                   help="PostgreSQL admin URL; fresh databases are created next to it (default %(default)s)")
    p.add_argument("--redis", default=os.environ.get("PBENCH_REDIS", DEFAULT_REDIS),
                   help="Redis URL (default %(default)s)")
    p.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"),
                   help="the project's interpreter for migrate/serve (default .venv/bin/python)")
    p.add_argument("--clock", default=None,
                   help="POMOC_CLOCK for the servers (default: the last past Wednesday 10:00 Europe/Warsaw, "
                        "so every run is in working hours and real tokens are not 'expired')")
    p.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for migrate and the servers (repeatable)")
    p.add_argument("--keep", action="store_true", help="keep the database, Redis keys and logs")
    p.add_argument("--seed", type=int, default=1, help="random seed")


def default_clock(today: date | None = None) -> str:
    """The last Wednesday 10:00 Warsaw time at least one day in the past, skipping
    11 November (a Wednesday in 2026) and other fixed Polish holidays.

    Why the past: tokens carry exp = real time + N hours and the server checks exp
    against its POMOC_CLOCK, so a clock in the future rejects real tokens as expired."""
    tz = ZoneInfo("Europe/Warsaw")
    d = (today or datetime.now(tz).date()) - timedelta(days=1)
    fixed_holidays = {(1, 1), (1, 6), (5, 1), (5, 3), (8, 15), (11, 1), (11, 11), (12, 24), (12, 25), (12, 26)}
    while d.weekday() != 2 or (d.month, d.day) in fixed_holidays:
        d -= timedelta(days=1)
    return datetime(d.year, d.month, d.day, 10, 0, tzinfo=tz).isoformat()


def parse_env(pairs: Iterable[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--server-env wants KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def fd_limits() -> tuple[int, int]:
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def proc_fds(pid: int) -> int:
    """Open file descriptors of a process (Linux /proc), -1 if unknown."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def proc_fd_limit(pid: int) -> int:
    """Soft RLIMIT_NOFILE of another process (Linux /proc/<pid>/limits), -1 if unknown."""
    try:
        with open(f"/proc/{pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    return int(line.split()[3])
    except (OSError, ValueError, IndexError):
        pass
    return -1


def proc_rss(pid: int) -> int:
    """Resident set size of another process in bytes (Linux /proc/<pid>/statm), 0 if gone."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def use_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


# ------------------------------------------------------------------ statistics
def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (as the peer harness computes them)."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


def summary_ms(values_s: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values_s]
    return {"n": len(ms), "p50": pct(ms, 50), "p95": pct(ms, 95), "p99": pct(ms, 99),
            "max": max(ms) if ms else float("nan")}


def fmt_ms(s: dict[str, float]) -> str:
    return (f"n={s['n']:<6} p50 {s['p50']:8.2f} ms  p95 {s['p95']:8.2f} ms  p99 {s['p99']:8.2f} ms  "
            f"max {s['max']:8.2f} ms")


# ------------------------------------------------------------------ PostgreSQL
def with_db(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def sqlalchemy_url(url: str) -> str:
    u = urlsplit(url)
    return urlunsplit(u._replace(scheme="postgresql+asyncpg"))


def asyncpg_dsn(url: str) -> str:
    u = urlsplit(url)
    return urlunsplit(u._replace(scheme="postgresql"))


async def pg_admin(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def create_database(admin_url: str, name: str) -> str:
    await pg_admin(admin_url, f'CREATE DATABASE "{name}"')
    return with_db(admin_url, name)


async def drop_database(admin_url: str, name: str) -> None:
    await pg_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ------------------------------------------------------------------ Redis
async def redis_cleanup(url: str, prefix: str) -> int:
    """Delete every key under the prefix (our own namespace only)."""
    from redis.asyncio import Redis

    r = Redis.from_url(url)
    n = 0
    try:
        batch: list[bytes] = []
        async for key in r.scan_iter(match=prefix.replace("*", r"\*") + "*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                n += await r.unlink(*batch)
                batch = []
        if batch:
            n += await r.unlink(*batch)
    finally:
        await r.aclose()
    return n


# ------------------------------------------------------------------ tokens
def mint(secret: str, role: str, sub: str, *, shop: str | None = None, name: str | None = None,
         ttl_s: int = 12 * 3600) -> str:
    import jwt

    claims: dict[str, Any] = {"sub": sub, "role": role, "exp": int(time.time()) + ttl_s}
    if role == "customer":
        claims.update({"shop": shop, "shop_name": f"Shop {shop}", "plan": "standard"})
        if name:
            claims["name"] = name
    else:
        claims["name"] = name or f"Agent {sub}"
    return jwt.encode(claims, secret, algorithm="HS256")


# ------------------------------------------------------------------ servers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _child_limits() -> None:
    raise_fd_limit()


@dataclass
class Server:
    name: str
    env: dict[str, str]
    python: str
    logdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def log_path(self) -> Path:
        return self.logdir / f"{self.name}.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> Server:
        with open(self.log_path, "ab") as f:
            self.proc = subprocess.Popen(
                [self.python, "-m", "server", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=ROOT, env=self.env, stdout=f, stderr=subprocess.STDOUT, preexec_fn=_child_limits)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}:\n"
                                   + self.log_path.read_text(errors="replace")[-2000:])
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.05)  # bounded readiness poll of another process
        self.kill()
        raise RuntimeError(f"{self.name} not ready within {timeout} s; see {self.log_path}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout: float = 8.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_problems(self) -> list[str]:
        """Warning/error lines and tracebacks from the server log (first ones)."""
        if not self.log_path.exists():
            return []
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if ('"level": "error"' in line or '"level": "warning"' in line or "Traceback" in line) \
                    and "redis.data_lost" not in line:
                out.append(line[:300])
        return out


class Env:
    """A fresh database + migrations + Redis prefix for one tool run; servers on it."""

    def __init__(self, args: argparse.Namespace, tool: str) -> None:
        self.args = args
        self.tool = tool
        self.dbname = f"pbench_{tool}_{os.getpid()}_{int(time.time())}"
        self.prefix = f"pbench-{tool}-{os.getpid()}:"
        self.secret = secrets.token_urlsafe(32)
        self.clock = args.clock or default_clock()
        self.logdir = Path(tempfile.mkdtemp(prefix=f"pbench-{tool}-"))
        self.db_url = with_db(args.pg, self.dbname)
        self.servers: list[Server] = []
        self.created = False
        # Settings a tool needs (e.g. POMOC_MAX_CONNECTIONS for 10,000 sockets); --server-env still wins.
        self.defaults: dict[str, str] = {}

    @property
    def server_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
        env.update({
            "DATABASE_URL": sqlalchemy_url(self.db_url),
            "REDIS_URL": self.args.redis,
            "POMOC_SECRET": self.secret,
            "POMOC_CLOCK": self.clock,
            "POMOC_REDIS_PREFIX": self.prefix,
            "POMOC_ALLOWED_ORIGINS": "*",
            # Every tool connects thousands of sockets from a few loopback addresses: the
            # budgets for connections yet to say hello (per address and per node) would
            # refuse or evict them as a flood. A tool measuring those sets its own.
            "POMOC_MAX_PENDING_PER_ADDRESS": str(UNLIMITED_PENDING),
            "POMOC_MAX_PENDING": str(UNLIMITED_PENDING),
        })
        if getattr(self.args, "rate_limits", "on") == "off":
            env.update(RATE_LIMITS_OFF)
        env.update(self.defaults)
        env.update(parse_env(self.args.server_env))
        return env

    async def create(self) -> None:
        await create_database(self.args.pg, self.dbname)
        self.created = True
        self.migrate()

    def migrate(self) -> None:
        path = self.logdir / "migrate.log"
        with open(path, "wb") as f:
            r = subprocess.run([self.args.python, "-m", "server", "migrate"], cwd=ROOT, env=self.server_env,
                               stdout=f, stderr=subprocess.STDOUT, timeout=300)
        if r.returncode != 0:
            raise RuntimeError(f"`python -m server migrate` exited {r.returncode}:\n"
                               + path.read_text(errors="replace")[-2000:])

    def server(self, name: str) -> Server:
        s = Server(name, self.server_env, self.args.python, self.logdir)
        self.servers.append(s)
        return s

    async def cleanup(self) -> None:
        for s in self.servers:
            s.stop()
        if self.args.keep:
            log(f"[{self.tool}] kept: database {self.dbname}, Redis prefix {self.prefix}, logs {self.logdir}")
            return
        if self.created:
            try:
                await drop_database(self.args.pg, self.dbname)
            except Exception as exc:  # noqa: BLE001
                log(f"[{self.tool}] could not drop {self.dbname}: {exc!r}")
        try:
            await redis_cleanup(self.args.redis, self.prefix)
        except Exception as exc:  # noqa: BLE001
            log(f"[{self.tool}] could not clean Redis prefix {self.prefix}: {exc!r}")
        log(f"[{self.tool}] cleaned up (database, Redis keys); server logs in {self.logdir}")


# ------------------------------------------------------------------ client
class Closed(Exception):
    pass


class Client:
    """One WebSocket connection speaking pomoc.v1.json; a reader task dispatches frames.

    `on_frame(frame, t)` is called for every frame (t = perf_counter at receipt);
    `request()` waits for the reply carrying a `ref`. Pings are answered."""

    def __init__(self, url: str, on_frame: Callable[[dict[str, Any], float], None] | None = None) -> None:
        self.url = url
        self.on_frame = on_frame
        self.ws: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._refs = 0
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.welcome: dict[str, Any] | None = None
        self.welcome_at: float | None = None

    async def connect(self, token: str, *, resume: dict[int, int] | None = None, feed: bool | None = None,
                      timeout: float = 30.0,  # noqa: ASYNC109
                      on_connected: Callable[[], None] | None = None) -> dict[str, Any]:
        from websockets.asyncio.client import connect

        self.ws = await asyncio.wait_for(
            connect(self.url, subprotocols=[SUBPROTOCOL], max_size=None, compression=None, open_timeout=timeout,
                    ping_interval=None, close_timeout=1),
            timeout)
        if on_connected is not None:
            on_connected()
        hello: dict[str, Any] = {"type": "hello", "token": token, "ref": "hello"}
        if resume:
            hello["resume"] = {str(k): v for k, v in resume.items()}
        if feed is not None:
            hello["feed"] = feed
        fut = self._expect("hello")
        self._reader = asyncio.ensure_future(self._read())
        await self.ws.send(orjson.dumps(hello).decode())
        self.welcome = await asyncio.wait_for(fut, timeout)
        return self.welcome

    def _expect(self, ref: str) -> asyncio.Future[dict[str, Any]]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[ref] = fut
        return fut

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for raw in self.ws:
                t = time.perf_counter()
                frame = orjson.loads(raw)
                kind = frame.get("type")
                ref = frame.get("ref")
                if kind == "welcome" and self.welcome_at is None:
                    self.welcome_at = t
                if kind == "ping":
                    await self.ws.send(orjson.dumps({"type": "pong", "ref": ref}).decode())
                    continue
                if self.on_frame is not None:
                    self.on_frame(frame, t)
                if ref is not None:
                    fut = self._waiting.pop(str(ref), None)
                    if fut is not None and not fut.done():
                        if kind == "error":
                            fut.set_exception(RuntimeError(f"error {frame.get('code')}: {frame.get('message')}"))
                        else:
                            fut.set_result(frame)
                elif kind == "error":
                    log(f"[client] unsolicited error frame: {frame}")
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code if self.ws is not None else None
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(Closed(f"closed ({self.close_code})"))
            self._waiting.clear()
            self.closed.set()

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(orjson.dumps(frame).decode())

    async def request(self, frame: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:  # noqa: ASYNC109
        self._refs += 1
        ref = f"r{self._refs}"
        fut = self._expect(ref)
        await self.send({**frame, "ref": ref})
        return await asyncio.wait_for(fut, timeout)

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 2)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader


async def paced(rate: float, seconds: float) -> AsyncIterator[int]:
    """An open loop: yields 0, 1, 2, … at `rate` per second for `seconds` (a late tick
    is yielded at once, so the loop catches up instead of drifting)."""
    interval = 1.0 / rate
    start = time.perf_counter()
    i = 0
    while i * interval < seconds:
        due = start + i * interval
        now = time.perf_counter()
        if due > now:
            await asyncio.sleep(due - now)
        yield i
        i += 1


async def gather_limited(n: int, coros: Iterable[Any]) -> list[Any]:
    """Run coroutines with at most n at a time; exceptions are returned, not raised."""
    sem = asyncio.Semaphore(n)

    async def one(c: Any) -> Any:
        async with sem:
            return await c

    return await asyncio.gather(*(one(c) for c in coros), return_exceptions=True)


def now_utc() -> datetime:
    return datetime.now(UTC)


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def proc_cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of another process (Linux /proc), 0 if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / tick
    except (OSError, IndexError, ValueError):
        return 0.0
