"""Fixtures the mail tests share: a real SMTP server per test, and servers at a chosen
clock that mail through it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mailing import MailServers
from tests.smtp import Inbox


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    box = Inbox().start()
    yield box
    box.stop()


@pytest.fixture
def mail_clock(server_env: dict[str, str], tmp_path: Path, inbox: Inbox) -> Iterator[MailServers]:
    servers = MailServers(server_env, tmp_path, inbox)
    yield servers
    servers.stop()
