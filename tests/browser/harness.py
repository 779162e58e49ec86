"""Shared helpers of the browser tests: a restartable Pomoc server subprocess and tokens.

`PomocServer` runs `python -m server serve` in embedded mode (a fresh SQLite file in
its own directory, the in-process Redis stand-in, the demo pages) on a free port,
and can restart on the same port and database, which is how the reconnect tests
take the server away from under the clients. Readiness is found by polling
`/healthz`, never by sleeping a fixed time.
"""

from __future__ import annotations

import asyncio
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx

from server.web.tokens import mint

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SECRET = "browser-tests-secret-0123456789abcdef"
# The servers' clock starts on a Wednesday morning in working hours (POMOC_CLOCK), so
# whether tickets go live or wait in the off-hours queue does not depend on when the
# tests run. Tokens are minted against that clock, not the wall clock.
CLOCK_START = datetime(2026, 11, 25, 10, 0, tzinfo=ZoneInfo("Europe/Warsaw"))
# Set POMOC_SCREENSHOTS=docs/screenshots to refresh the README screenshots from a test run.
SCREENSHOTS = os.environ.get("POMOC_SCREENSHOTS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PomocServer:
    """`python -m server serve` in a subprocess, restartable on the same port and database."""

    def __init__(self, workdir: Path, port: int, env: dict[str, str]) -> None:
        self.clock_start = datetime.fromisoformat(env.get("POMOC_CLOCK", CLOCK_START.isoformat()))
        self.workdir = workdir
        self.port = port
        self.env = env
        self.base = f"http://127.0.0.1:{port}"
        self.proc: asyncio.subprocess.Process | None = None
        self.started_at = datetime.now(UTC)
        self.log_path = workdir / "server.log"

    def now(self) -> datetime:
        """The server's clock: POMOC_CLOCK plus the time since this process started."""
        return self.clock_start + (datetime.now(UTC) - self.started_at)

    async def start(self, timeout: float = 30.0) -> None:
        self.started_at = datetime.now(UTC)
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "server", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with httpx.AsyncClient(timeout=1.0) as client:
            while True:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    if (await client.get(f"{self.base}/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if loop.time() > deadline:
                    raise TimeoutError(f"the server did not become healthy in {timeout} s:\n{self.log_tail()}")
                await asyncio.sleep(0.05)  # polling interval, not synchronization

    async def stop(self) -> None:
        """SIGTERM, as a deploy would: the server closes its sockets with 1001 and exits."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def token(self, role: str = "customer", sub: str = "owner-1", *, shop: str = "shop-1",
              shop_name: str = "Sklep Testowy", plan: str = "trial", name: str | None = None,
              expired: bool = False) -> str:
        # Tokens live on real time (the server's POMOC_CLOCK moves only the support rules):
        # valid for a day, or expired two days ago.
        real_now = datetime.now(UTC)
        now = real_now - timedelta(days=2) if expired else real_now
        ttl = timedelta(days=1)
        if role == "agent":
            return mint(SECRET, role="agent", sub=sub, now=now, ttl=ttl, name=name or "Anna")
        return mint(SECRET, role="customer", sub=sub, now=now, ttl=ttl, shop=shop, shop_name=shop_name,
                    plan=plan, name=name or "Jan Kowalski")


def embedded_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POMOC_", "DATABASE_URL", "REDIS_URL"))}
    env.update({"PYTHONPATH": str(ROOT), "POMOC_SECRET": SECRET, "POMOC_LOG_LEVEL": "WARNING",
                "POMOC_CLOCK": CLOCK_START.isoformat()})
    env.update(extra)
    return env


def screenshot_path(name: str) -> Path | None:
    if not SCREENSHOTS:
        return None
    folder = Path(SCREENSHOTS)
    if not folder.is_absolute():
        folder = ROOT / folder
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


class HostSite:
    """A shop panel on its own origin (another port), embedding the widget cross-origin.

    Serves `pages` by path and `/test-token`, which hands out `tokens` in turn (the
    last one repeatedly) and records what it issued. A real HTTP server rather than
    Playwright's request routing: Chromium's local-network checks block a routed
    page from opening a WebSocket to 127.0.0.1, and a real origin is what shops have.
    """

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        self.tokens: list[str] = []
        self.issued: list[str] = []
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                path = self.path.split("?")[0]
                if path == "/test-token" and site.tokens:
                    token = site.tokens[min(len(site.issued), len(site.tokens) - 1)]
                    site.issued.append(token)
                    self._answer(200, "text/plain", token)
                elif path in site.pages:
                    self._answer(200, "text/html; charset=utf-8", site.pages[path])
                else:
                    self._answer(404, "text/plain", "not found")

            def _answer(self, status: int, content_type: str, body: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                return  # keep test output quiet

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="host-site", daemon=True)

    def start(self) -> HostSite:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
