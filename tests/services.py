"""Where the real services for the tests are, and what to do when one is missing.

The suite runs against real Redis and real PostgreSQL (and SQLite). Locally a
missing service skips the tests that need it, with the reason; in CI (`CI=true`)
it fails them, so a green CI run always means the real services were exercised.
"""

from __future__ import annotations

import os
import socket
import uuid
from urllib.parse import urlsplit

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
REDIS_URL = os.environ.get("POMOC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("POMOC_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
RUN_ID = uuid.uuid4().hex[:10]
REDIS_PREFIX = f"pomoc-test-{RUN_ID}:"
PG_SCHEMA = f"pomoc_test_{RUN_ID}"
SECRET = "test-secret-" + "x" * 40
# The clock of the general-purpose test servers: a Wednesday morning, inside working
# hours whatever day the suite runs (tests of the time rules set their own).
WORKING_CLOCK = "2026-11-18T10:00:00+01:00"


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=1):
            return True
    except OSError:
        return False


def require(name: str, url: str) -> None:
    if reachable(url):
        return
    message = f"{name} is not reachable at {url}"
    if IN_CI:
        pytest.fail(f"{message}: CI runs the suite against the real service", pytrace=False)
    pytest.skip(message)
