"""Shared pieces of the end-to-end mail tests: a real SMTP server per test, servers at a
chosen clock that mail through it, `jobs --once --at` workers, and small helpers."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import urllib.error
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path

from tests import services
from tests.conftest import Tokens
from tests.servers import ROOT, ServerProcess, free_port
from tests.smtp import Inbox, Mail
from tests.wsclient import Client

PANEL = "https://panel.example/pomoc?ticket={ticket}"


class MailServers:
    """Starts servers at a chosen clock that mail through `inbox`, with the jobs left to
    `jobs --once --at` processes; `stop()` stops them all (a test module's fixture)."""

    def __init__(self, server_env: dict[str, str], tmp_path: Path, inbox: Inbox) -> None:
        self.server_env = server_env
        self.tmp_path = tmp_path
        self.inbox = inbox
        self.started: list[ServerProcess] = []
        self.prefix = f"{services.REDIS_PREFIX}{uuid.uuid4().hex[:6]}:"

    def __call__(self, clock: str, **extra: str) -> tuple[ServerProcess, Tokens]:
        port = free_port()
        env = {**self.server_env, "POMOC_CLOCK": clock, "POMOC_JOBS_IN_WEB": "false",
               "POMOC_REDIS_PREFIX": self.prefix, "POMOC_SMTP_URL": self.inbox.url,
               "POMOC_MAIL_FROM": "Pomoc <no-reply@pomoc.test>", "POMOC_PANEL_URL": PANEL,
               "POMOC_PUBLIC_URL": f"http://127.0.0.1:{port}", **extra}
        node = ServerProcess(env, port=port, log_path=self.tmp_path / f"mail-{len(self.started)}.log").start()
        self.started.append(node)
        return node, Tokens()

    def stop(self) -> None:
        for node in self.started:
            node.stop()


async def run_jobs(node: ServerProcess, at: datetime | str) -> dict[str, int]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "jobs", "--once", "--at", at if isinstance(at, str) else at.isoformat(),
        cwd=ROOT, env={**os.environ, **node.env, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    except TimeoutError:
        proc.kill()
        _, err = await proc.communicate()
        raise AssertionError(f"jobs --once --at {at} ran over 120 s; its log:\n{err.decode()[-3000:]}") from None
    assert proc.returncode == 0, err.decode()[-3000:]
    done: dict[str, int] = json.loads(out.decode().strip().splitlines()[-1])["done"]
    return done


async def open_ticket(client: Client, severity: str = "minor", title: str = "Faktury") -> tuple[dict, dict]:
    reply = await client.request({"type": "open_ticket", "title": title, "body": "Faktury się nie generują",
                                  "severity": severity, "client_id": str(uuid.uuid4())}, "ticket")
    assert reply["type"] == "ticket", reply
    ticket = reply["ticket"]
    await client.expect("message", ticket=ticket["id"], where=lambda m: m["author"]["kind"] == "customer")
    ack = await client.expect("message", ticket=ticket["id"], where=lambda m: m["author"]["kind"] == "system")
    return ticket, ack


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, method=method,
                                     headers={"Content-Type": "application/x-www-form-urlencoded"} if body else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def links(mail: Mail) -> list[str]:
    return re.findall(r"https?://[^\s<>\"]+", mail.text())


def unsubscribe_url(mail: Mail) -> str:
    header = mail["List-Unsubscribe"] or ""
    match = re.fullmatch(r"<(https?://[^>]+)>", header)
    assert match, header
    return match.group(1)
