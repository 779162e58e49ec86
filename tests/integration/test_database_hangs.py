"""A database that hangs costs clients `unavailable` within POMOC_DATABASE_TIMEOUT,
never a silent wait, and nothing acknowledged is lost or stored twice.

A real server process on a private PostgreSQL (its own cluster, frozen with SIGSTOP:
a hang, not a crash) and the shared real Redis; and on SQLite with the embedded
stand-in, whose write lock another process holds."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from tests import services
from tests.conftest import Tokens, migrate, unique
from tests.private import PrivatePostgres, thaw
from tests.servers import ServerProcess
from tests.wsclient import Client

TIMEOUT = 2.0  # POMOC_DATABASE_TIMEOUT of these servers
MARGIN = 3.0  # what a loaded 2-core machine may add to it
RECOVERY = 30.0  # seconds the node gets to work again after the database returns


def hang_env(database: dict[str, str], redis_url: str, tmp: Path) -> dict[str, str]:
    return {
        **database,
        "REDIS_URL": redis_url,
        "POMOC_REDIS_PREFIX": f"{services.REDIS_PREFIX}hang-{uuid.uuid4().hex[:6]}:",
        "POMOC_SECRET": services.SECRET,
        "POMOC_CLOCK": services.WORKING_CLOCK,
        "POMOC_DATABASE_TIMEOUT": str(TIMEOUT),
        "POMOC_JOBS_IN_WEB": "false",
        "POMOC_RATE_USER_MESSAGES": "off",
        "POMOC_RATE_SHOP_MESSAGES": "off",
        "POMOC_RATE_AGENT_MESSAGES": "off",
        "POMOC_RATE_SHOP_TICKETS": "off",
        "POMOC_TMP": str(tmp),
    }


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    if not PrivatePostgres.available():
        if services.IN_CI:
            pytest.fail("PostgreSQL binaries are needed to freeze a private cluster", pytrace=False)
        pytest.skip("PostgreSQL binaries not found")
    pg = PrivatePostgres().start()
    yield pg
    pg.stop()


@pytest.fixture
def frozen(private_pg: PrivatePostgres) -> Iterator[list[list[int]]]:
    """Whatever a test froze is thawed at its end, whatever happened."""
    trees: list[list[int]] = []
    yield trees
    for tree in trees:
        thaw(tree)


@pytest.fixture
async def pg_node(private_pg: PrivatePostgres, redis_url: str, tmp_path: Path) -> AsyncIterator[ServerProcess]:
    schema = f"hang_{uuid.uuid4().hex[:8]}"
    env = hang_env({"DATABASE_URL": private_pg.url, "POMOC_DATABASE_SCHEMA": schema}, redis_url, tmp_path)
    await asyncio.to_thread(migrate, env)
    node = ServerProcess(env, log_path=tmp_path / "server.log").start()
    yield node
    node.stop()


async def answer(client: Client, frame: dict, reply: str, within: float) -> tuple[dict, float]:
    """The reply to `frame` (or its error) and how long it took."""
    started = time.monotonic()
    got = await client.request(frame, reply, timeout=within)
    return got, time.monotonic() - started


async def until_acked(client: Client, frame: dict, deadline: float) -> tuple[dict, int]:
    """Retry a send (same client_id) until it is acked; returns the ack and the attempts."""
    attempts = 0
    while True:
        attempts += 1
        got = await client.request(frame, "ack", timeout=max(1.0, deadline - time.monotonic()))
        if got["type"] == "ack":
            return got, attempts
        assert got["code"] == "unavailable", got
        assert time.monotonic() < deadline, f"still unavailable after the database returned: {got}"
        await asyncio.sleep(0.2)  # the client's retry backoff, not synchronization


async def stored(node: ServerProcess, ticket_id: int) -> list[tuple[int, str | None]]:
    url = node.env["DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(url, server_settings={"search_path": node.env["POMOC_DATABASE_SCHEMA"]})
    try:
        rows = await conn.fetch("SELECT seq, client_id FROM messages WHERE ticket_id = $1 ORDER BY seq", ticket_id)
    finally:
        await conn.close()
    return [(r["seq"], r["client_id"]) for r in rows]


async def stopped(tree: list[int], timeout: float = 10.0) -> list[int]:
    """Wait until every process of a frozen tree is really stopped (SIGSTOP takes
    effect when the process is next scheduled: a query sent meanwhile could still
    be answered)."""
    deadline = time.monotonic() + timeout
    while True:
        running = [p for p in tree if _state(p) not in ("T", "t", "")]
        if not running:
            return tree
        assert time.monotonic() < deadline, f"still running after SIGSTOP: {running}"
        await asyncio.sleep(0.01)  # polling another process's state, bounded by the deadline


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""  # gone


def ready(node: ServerProcess) -> bool:
    try:
        with urllib.request.urlopen(node.http + "/readyz", timeout=10) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def log_events(node: ServerProcess) -> list[dict]:
    events = []
    for line in node.log().splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            events.append({"level": "raw", "event": line})
    return events


async def test_a_frozen_postgresql_answers_unavailable_in_time_and_loses_nothing(
        pg_node, private_pg, frozen, clients, tokens: Tokens):
    node = pg_node
    shop = unique("shop")
    customer = await Client.connect(node.url)
    clients.append(customer)
    await customer.hello(tokens.customer(shop))
    ticket = (await customer.request({"type": "open_ticket", "title": "Zamrożona baza", "body": "Opis",
                                      "client_id": "open-1"}, "ticket"))["ticket"]
    tid = ticket["id"]
    agent = await Client.connect(node.url)
    clients.append(agent)
    await agent.hello(tokens.agent(unique("a")), feed=False)
    await agent.request({"type": "follow", "ticket": tid}, "ticket")
    acked: dict[str, int] = {}
    for i in range(5):
        ack = await customer.request({"type": "send", "ticket": tid, "body": f"przed {i}",
                                      "client_id": f"before-{i}"}, "ack")
        acked[f"before-{i}"] = ack["seq"]
    late = await Client.connect(node.url)  # connected, says hello while the database hangs
    clients.append(late)

    frozen.append(await stopped(private_pg.freeze()))
    frozen_at = time.monotonic()
    budget = TIMEOUT + MARGIN
    sends = [(customer, {"type": "send", "ticket": tid, "body": f"w trakcie {i}", "client_id": f"during-{i}"})
             for i in range(3)]
    sends.append((agent, {"type": "send", "ticket": tid, "body": "odpowiedź w trakcie", "client_id": "during-a"}))
    first = await asyncio.gather(*(answer(c, f, "ack", budget + 5) for c, f in sends))
    hello, hello_took = await answer(late, {"type": "hello", "token": tokens.customer(shop, sub="late")},
                                     "welcome", budget + 5)
    # Still frozen, later: the writer's stuck work and the pool must not delay answers.
    second = await asyncio.gather(*(answer(c, f, "ack", budget + 5) for c, f in sends))
    read, read_took = await answer(customer, {"type": "history", "ticket": tid}, "history", 2 * budget + 5)
    print(f"\nPostgreSQL frozen (timeout {TIMEOUT:g} s): sends answered in "
          f"{', '.join(f'{t:.2f}' for _, t in first)} s, again in {', '.join(f'{t:.2f}' for _, t in second)} s; "
          f"hello in {hello_took:.2f} s ({hello.get('code', hello['type'])}); "
          f"history in {read_took:.2f} s ({read.get('code', read['type'])})")
    for got, took in first + second:
        assert (got["type"], got.get("code")) == ("error", "unavailable"), got
        assert took < budget, f"unavailable took {took:.2f} s"
    assert (hello["type"], hello.get("code")) == ("error", "unavailable") and hello_took < budget, hello
    assert (read["type"], read.get("code")) == ("error", "unavailable"), read
    assert late.closed is None and customer.closed is None and agent.closed is None

    thaw(frozen.pop())
    print(f"frozen for {time.monotonic() - frozen_at:.1f} s")
    thawed_at = time.monotonic()
    deadline = thawed_at + RECOVERY
    for client, frame in sends:
        ack, attempts = await until_acked(client, frame, deadline)
        acked[frame["client_id"]] = ack["seq"]
    print(f"after the thaw every retried send acked within {time.monotonic() - thawed_at:.2f} s")
    # The hello that failed is said again on the same socket, and works.
    welcome, attempts = None, 0
    while welcome is None:
        attempts += 1
        got = await late.request({"type": "hello", "token": tokens.customer(shop, sub="late")}, "welcome",
                                 timeout=RECOVERY)
        if got["type"] == "welcome":
            welcome = got
        else:
            assert got["code"] == "unavailable" and time.monotonic() < deadline, got
            await asyncio.sleep(0.2)  # the client's retry backoff, not synchronization
    assert [t["id"] for t in welcome["tickets"]] == [tid]
    print(f"the same socket's hello welcomed after {attempts} attempt(s), "
          f"{time.monotonic() - thawed_at:.2f} s after the thaw")
    for i in range(3):
        ack = await customer.request({"type": "send", "ticket": tid, "body": f"po {i}", "client_id": f"after-{i}"},
                                     "ack")
        acked[f"after-{i}"] = ack["seq"]
    assert await asyncio.to_thread(ready, node), "the node reports ready again, without a restart"

    # Every acknowledged message is in the database once, with the seq it was acked with.
    rows = await stored(node, tid)
    ids = [c for _, c in rows]
    assert [s for s, _ in rows] == list(range(1, len(rows) + 1)), "gapless"
    for client_id, seq in acked.items():
        assert ids.count(client_id) == 1, client_id
        assert (seq, client_id) in rows
    # The agent following the ticket got each customer message once (the ones committed
    # late included: they were announced when their retry found them stored).
    customer_seqs = sorted(acked[c] for c in acked if c != "during-a")
    got = [await agent.expect("message", ticket=tid, seq=s, timeout=10) for s in customer_seqs]
    assert [m["seq"] for m in got] == customer_seqs
    await agent.request({"type": "ping"}, "pong")
    assert not [m for m in agent.pending("message") if m["ticket"] == tid], "nothing twice"
    # Warnings, not a traceback for every failed request.
    events = log_events(node)
    warned = [e for e in events if e.get("level") == "warning" and str(e.get("event", "")).startswith(
        ("writer.", "ws.hello_failed", "ws.dependency_failed"))]
    tracebacks = [e for e in events if "exc" in e or "Traceback" in str(e.get("event", ""))]
    print(f"log: {len(warned)} warnings, {len(tracebacks)} tracebacks, {len(events)} lines")
    assert warned, "the hang is logged"
    assert len(tracebacks) <= 2, [e.get("event") for e in tracebacks]


async def test_a_locked_sqlite_database_answers_unavailable_in_time(redis_url, clients, tokens: Tokens,
                                                                     tmp_path: Path):
    database = tmp_path / "pomoc.db"
    env = hang_env({"DATABASE_URL": f"sqlite:///{database}"}, "memory://", tmp_path)
    await asyncio.to_thread(migrate, env)
    node = ServerProcess(env, log_path=tmp_path / "server.log").start()
    try:
        customer = await Client.connect(node.url)
        clients.append(customer)
        await customer.hello(tokens.customer(unique("shop")))
        tid = (await customer.request({"type": "open_ticket", "title": "Zablokowana baza", "body": "Opis",
                                       "client_id": "open-1"}, "ticket"))["ticket"]["id"]
        before = await customer.request({"type": "send", "ticket": tid, "body": "przed", "client_id": "b"}, "ack")
        # Another process holds SQLite's write lock (a stuck job, a backup).
        holder = sqlite3.connect(database, isolation_level=None, timeout=1)
        try:
            holder.execute("BEGIN IMMEDIATE")
            frame = {"type": "send", "ticket": tid, "body": "w trakcie", "client_id": "d"}
            got, took = await answer(customer, frame, "ack", TIMEOUT + MARGIN + 30)
            print(f"\nSQLite write lock held: send answered in {took:.2f} s ({got.get('code', got['type'])})")
            assert (got["type"], got.get("code")) == ("error", "unavailable"), got
            assert took < TIMEOUT + MARGIN
        finally:
            holder.rollback()
            holder.close()
        ack, attempts = await until_acked(customer, frame, time.monotonic() + RECOVERY)
        assert ack["seq"] == before["seq"] + 1
        history = await customer.request({"type": "history", "ticket": tid}, "history")
        assert [m["client_id"] for m in history["messages"]].count("d") == 1
    finally:
        node.stop()
