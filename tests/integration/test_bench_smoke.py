"""The bench tools still run: each `bench/<tool>.py --smoke` as a subprocess.

No timing assertions: only that each tool exits 0 (nothing lost, no error frames,
rows purged/kept as expected) and prints its summary. They need real PostgreSQL (a
role that may create databases) and Redis: missing locally -> skip, in CI -> fail.
Each tool creates and drops its own database `pbench_<tool>_*` and Redis prefix.
"""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests import services
from tests.servers import ROOT

# Every tool's --smoke takes a few seconds (mostly migrate and server start).
TOOLS = {
    "storm.py": ["storm: ", "done (welcome + missed message)", "total (last customer done)", "target: all"],
    "idle.py": ["idle: ", "held: 200/200; failed: 0; closed while held: 0;", "handshakes (connect",
                "server RSS: before", "per connection", "server fds: before", "fresh customer while held: hello",
                "server answers /readyz: yes"],
    "bigdb.py": ["bigdb: ", "target: history and every welcome"],
    "search.py": ["search: ", "agent target ", "customer platnosc przelewy24", "target: every search"],
    "search_writes.py": ["search_writes: ", "as migrated", "GIN on messages (fastupdate on)", "the indexer"],
    "latency.py": ["latency: ", "delivery customer(A) -> agent(B)", "delivery agent(B) -> customer(A)",
                   "sent "],
    "flood.py": ["flood: ", "quiet delivery", "flood delivery", "ratio flood/quiet delivery",
                 "closed with 4429", "rate_limited without retry_after: 0"],
    "stack.py": ["stack: medians over the rounds", "| httptools | websockets-sansio |", "| h11 | websockets-sansio |",
                 "server warnings/errors in the logs: 0"],
    "subscriber.py": ["subscriber: ", "redis-py PubSub  receiving:", "Pomoc RawPubSub  receiving:"],
    "commands.py": ["commands: ", "one call each     redis-py", "one call each     direct",
                    "pipelines of 16   redis-py", "pipelines of 16   direct"],
    "mail.py": ["mail: ", "delivered 300/300; duplicates: 0; recorded sent: 300", "target: all"],
    "purge.py": ["purge: ", "dry run: ", "deleted_messages", "msg/s", "largest single DELETE",
                 "dry run == purge == seeded old", "old rows all gone: yes; recent and open rows all kept: yes"],
}


def _admin_url() -> str:
    """The PostgreSQL server of the test suite, as a plain admin URL (database `postgres`)."""
    u = urlsplit(services.POSTGRES_URL)
    return urlunsplit(u._replace(scheme="postgresql", path="/postgres"))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("tool", list(TOOLS))
def test_bench_tool_smoke(tool: str) -> None:
    services.require("PostgreSQL", services.POSTGRES_URL)
    services.require("Redis", services.REDIS_URL)
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    result = subprocess.run(
        [sys.executable, f"bench/{tool}", "--smoke", "--pg", _admin_url(), "--redis", services.REDIS_URL,
         "--python", sys.executable],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=55)
    report = f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    assert result.returncode == 0, report
    for line in TOOLS[tool]:
        assert line in result.stdout, f"{line!r} missing\n{report}"
