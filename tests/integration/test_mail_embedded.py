"""Embedded mode (no DATABASE_URL, REDIS_URL or POMOC_SMTP_URL): the jobs in the web
process keep every mail in the local mailbox, and `/demo/mailbox` shows the demo
owner's."""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import ROOT, ServerProcess
from tests.wsclient import join


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[ServerProcess]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POMOC_", "DATABASE_URL", "REDIS_URL"))}
    env.update({"PYTHONPATH": str(ROOT), "POMOC_CLOCK": "2026-11-18T10:00:00+01:00", "POMOC_JOBS_INTERVAL": "0.3",
                "POMOC_LOG_LEVEL": "INFO"})
    node = ServerProcess(env, cwd=tmp_path, log_path=tmp_path / "embedded.log").start(inherit_env=False)
    yield node
    node.stop()


def get(url: str) -> tuple[int, dict[str, str], str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, dict(response.headers), response.read().decode()


async def mailbox_showing(node: ServerProcess, text: str, timeout: float = 20.0) -> str:
    """The mailbox page once it shows `text` (the jobs run every 0.3 s)."""
    deadline = time.monotonic() + timeout
    while True:
        _, _, page = await asyncio.to_thread(get, node.http + "/demo/mailbox")
        if text in page:
            return page
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not in the mailbox within {timeout} s:\n{page[-1500:]}")
        await asyncio.sleep(0.2)  # polling another process's page for a condition, bounded by the deadline


async def test_the_demo_owners_mail_is_kept_and_shown(embedded: ServerProcess, clients) -> None:
    _, _, body = await asyncio.to_thread(get, embedded.http + "/demo/token?role=customer")
    customer, _ = await join(embedded, clients, json.loads(body)["token"])
    reply = await customer.request({"type": "open_ticket", "title": "Zwroty", "body": "Jak przyjąć zwrot?",
                                    "severity": "question", "client_id": str(uuid.uuid4())}, "ticket")
    number = reply["ticket"]["id"]
    page = await mailbox_showing(embedded, f"[Pomoc #{number}] Przyjęliśmy zgłoszenie: Zwroty")
    assert "wlasciciel@sklep-demo.example" in page and "Oczekiwany czas reakcji" in page
    assert "srcdoc=" in page and 'sandbox=""' in page  # the HTML part, in a sandboxed frame
    status, headers, _ = await asyncio.to_thread(get, embedded.http + "/demo/mailbox")
    assert status == 200 and "default-src 'none'" in headers["content-security-policy"]
    _, _, body = await asyncio.to_thread(get, embedded.http + "/demo/token?role=agent")
    agent, _ = await join(embedded, clients, json.loads(body)["token"])
    await agent.request({"type": "update_ticket", "ticket": number, "status": "resolved"}, "ticket")
    page = await mailbox_showing(embedded, f"[Pomoc #{number}] Zgłoszenie rozwiązane: Zwroty")
    assert page.index("Zgłoszenie rozwiązane") < page.index("Przyjęliśmy zgłoszenie"), "newest first"
