"""A resume's replay costs the node bounded memory, however much was missed, and a
resume naming tickets the client may not see still gets its welcome.

Against a real server process: SQLite with the embedded Redis stand-in, and
PostgreSQL with real Redis. The threads are seeded straight into the database (long
messages, fast); the replays go over real WebSockets and are read as they arrive."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from sqlalchemy import update
from websockets.asyncio.client import ClientConnection, connect

from server.settings import Settings
from server.store.db import create_engine
from server.store.models import messages, tickets
from tests.conftest import Tokens, unique
from tests.servers import ServerProcess, peak_rss, rss
from tests.wsclient import Client

TICKETS = 4
PER_TICKET = 1000
BODY_CHARS = 8000
CLIENTS = 4
BUDGET = 40 * 1024 * 1024  # RSS growth allowed for the four concurrent replays
MiB = 1024 * 1024


@pytest.fixture
async def node(server_env: dict[str, str], db_kind: str, tmp_path: Path) -> AsyncIterator[ServerProcess]:
    """SQLite runs on the embedded stand-in, PostgreSQL on real Redis."""
    env = {**server_env, "POMOC_REDIS_PREFIX": f"{server_env['POMOC_REDIS_PREFIX']}{uuid.uuid4().hex[:6]}:"}
    if db_kind == "sqlite":
        env["REDIS_URL"] = "memory://"
    proc = ServerProcess(env, log_path=tmp_path / "server.log").start()
    yield proc
    proc.stop()


def body(ticket_id: int, seq: int) -> str:
    head = f"{ticket_id}:{seq}:"
    # Polish letters make the body two bytes a character in UTF-8, like real replies.
    return head + ("Zażółć gęślą jaźń. " * (BODY_CHARS // 19 + 1))[: BODY_CHARS - len(head)]


async def seed(env: dict[str, str], ticket_ids: list[int], per_ticket: int) -> dict[int, int]:
    """Append `per_ticket` long agent messages to each ticket; returns each one's last seq."""
    engine = create_engine(Settings.from_env(env))
    lasts: dict[int, int] = {}
    try:
        for ticket_id in ticket_ids:
            async with engine.begin() as conn:
                start = (await conn.execute(
                    tickets.select().with_only_columns(tickets.c.last_seq).where(tickets.c.id == ticket_id)
                )).scalar_one()
                now = datetime.now(UTC)
                for chunk in range(0, per_ticket, 100):
                    await conn.execute(messages.insert(), [
                        {"ticket_id": ticket_id, "seq": start + i + 1, "author_kind": "agent",
                         "author_id": "seeder", "author_name": "Seeder", "body": body(ticket_id, start + i + 1),
                         "client_id": f"seed-{start + i + 1}", "created_at": now, "queued_until": None}
                        for i in range(chunk, min(chunk + 100, per_ticket))])
                lasts[ticket_id] = start + per_ticket
                # What the writer keeps for every public message: the customer's window ends there.
                await conn.execute(update(tickets).where(tickets.c.id == ticket_id)
                                   .values(last_seq=lasts[ticket_id], last_public_seq=lasts[ticket_id]))
    finally:
        await engine.dispose()
    return lasts


async def open_tickets(node: ServerProcess, token: str, count: int) -> list[int]:
    client = await Client.connect(node.url)
    try:
        await client.hello(token)
        ids = []
        for i in range(count):
            reply = await client.request({"type": "open_ticket", "title": f"Długi wątek {i}", "body": "Opis",
                                          "severity": "question", "client_id": f"open-{i}"}, "ticket")
            assert reply["type"] == "ticket", reply
            ids.append(reply["ticket"]["id"])
        return ids
    finally:
        await client.close()


async def replay(node: ServerProcess, token: str, resume: dict[int, int], expected: dict[int, list[int]],
                 timeout: float = 120) -> tuple[dict, list[tuple[int, int]], float]:
    """Say hello with `resume` and read the replay as it arrives (nothing kept but the
    seqs): the welcome, then the message frames; returns them and how long it took."""
    total = sum(map(len, expected.values()))
    started = time.monotonic()
    async with connect(node.url, subprotocols=["pomoc.v1.json"], max_size=None,  # type: ignore[list-item]
                       open_timeout=10) as ws:
        await ws.send(orjson.dumps({"type": "hello", "token": token, "ref": "h",
                                    "resume": {str(t): s for t, s in resume.items()}}).decode())
        welcome = await _next(ws, timeout)
        assert welcome["type"] == "welcome", welcome
        got: list[tuple[int, int]] = []
        while len(got) < total:
            frame = await _next(ws, timeout)
            if frame["type"] != "message":
                continue
            ticket_id, seq = frame["ticket"], frame["seq"]
            assert frame["body"].startswith(f"{ticket_id}:{seq}:") and len(frame["body"]) == BODY_CHARS
            got.append((ticket_id, seq))
        # Nothing more is replayed after the expected frames.
        await ws.send(orjson.dumps({"type": "ping", "ref": "p"}).decode())
        while (frame := await _next(ws, timeout))["type"] != "pong":
            assert frame["type"] != "message", f"replayed too much: {frame['ticket']}/{frame['seq']}"
    return welcome, got, time.monotonic() - started


async def _next(ws: ClientConnection, timeout: float) -> dict:
    raw = await asyncio.wait_for(ws.recv(), timeout)
    return orjson.loads(raw)


async def sample_rss(pid: int, out: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        out.append(rss(pid))
        try:
            await asyncio.wait_for(stop.wait(), 0.02)  # a sampling period, not synchronization
        except TimeoutError:
            pass


async def test_a_long_replay_costs_bounded_memory_and_delivers_everything_once_in_order(
        node, server_env, tokens: Tokens, db_kind):
    shop = unique("shop")
    token = tokens.customer(shop)
    ticket_ids = await open_tickets(node, token, TICKETS)
    lasts = await seed(node.env, ticket_ids, PER_TICKET)
    # The newest 1,000 missed per ticket, oldest first, tickets in id order; the
    # opening messages (more than the replay holds) are announced as incomplete.
    expected = {t: list(range(lasts[t] - 999, lasts[t] + 1)) for t in ticket_ids}
    want = [(t, s) for t in sorted(expected) for s in expected[t]]
    # Warm the node up: the code paths of a replay, a page of long messages.
    await replay(node, token, {ticket_ids[0]: lasts[ticket_ids[0]] - 300},
                 {ticket_ids[0]: expected[ticket_ids[0]][-300:]})
    before, peak_before = rss(node.pid), peak_rss(node.pid)
    samples: list[int] = []
    stop = asyncio.Event()
    sampler = asyncio.ensure_future(sample_rss(node.pid, samples, stop))
    try:
        results = await asyncio.gather(*(replay(node, token, {t: 0 for t in ticket_ids}, expected)
                                         for _ in range(CLIENTS)))
    finally:
        stop.set()
        await sampler
    peak_after = peak_rss(node.pid)
    growth = peak_after - before
    sampled = max(samples, default=before) - before
    replayed_mb = CLIENTS * TICKETS * PER_TICKET * BODY_CHARS * 2 / MiB
    print(f"\n[{db_kind}] resume of {CLIENTS} clients x {TICKETS} tickets x {PER_TICKET} messages x "
          f"{BODY_CHARS} chars (~{replayed_mb:.0f} MiB of frames): RSS before {before / MiB:.1f} MiB, "
          f"peak before {peak_before / MiB:.1f} MiB, peak after {peak_after / MiB:.1f} MiB, "
          f"growth {growth / MiB:.1f} MiB (sampled {sampled / MiB:.1f} MiB), "
          f"replay times {', '.join(f'{r[2]:.1f}' for r in results)} s")
    for welcome, got, _ in results:
        assert welcome["resume_incomplete"] == sorted(ticket_ids)
        assert got == want, "every missed message exactly once, in order"
    assert growth < BUDGET, f"a replay grew the node by {growth / MiB:.1f} MiB"
    # The node still serves: a live message reaches a resumed client.
    client = await Client.connect(node.url)
    try:
        await client.hello(token, resume={str(t): lasts[t] for t in ticket_ids})
        agent = await Client.connect(node.url)
        try:
            await agent.hello(tokens.agent(unique("a")), feed=False)
            ack = await agent.request({"type": "send", "ticket": ticket_ids[0], "body": "na żywo"}, "ack")
            assert ack["seq"] == lasts[ticket_ids[0]] + 1
            live = await client.expect("message", ticket=ticket_ids[0])
            assert live["seq"] == ack["seq"] and live["body"] == "na żywo"
        finally:
            await agent.close()
    finally:
        await client.close()


@pytest.mark.parametrize("role", ["customer", "agent"])
async def test_a_resume_naming_a_thousand_tickets_it_may_not_see_still_gets_its_welcome(
        node, tokens: Tokens, role, db_kind):
    owner = tokens.customer(unique("shop"))
    foreign = await open_tickets(node, owner, 3)
    unknown = [2_000_000_000 + i for i in range(1000 - len(foreign))]
    asked = {**{t: 0 for t in foreign}, **{t: 5 for t in unknown}}
    token = tokens.customer(unique("stranger")) if role == "customer" else tokens.agent(unique("bot"))
    refused = unknown if role == "agent" else sorted([*foreign, *unknown])
    client = await Client.connect(node.url)
    try:
        started = time.monotonic()
        welcome = await client.hello(token, resume={str(t): s for t, s in asked.items()})
        took = time.monotonic() - started
        errors = []
        await client.request({"type": "ping"}, "pong", timeout=30)
        errors = client.pending("error")
        named = sorted(t for e in errors for t in e.get("tickets", []))
        print(f"\n[{db_kind}/{role}] resume naming {len(asked)} tickets ({len(refused)} refused): welcome in "
              f"{took:.2f} s, {len(errors)} error frame(s) naming {len(named)} tickets")
        assert welcome["resume_incomplete"] == []
        assert [e["code"] for e in errors] == ["forbidden"], "one error names every refused ticket"
        assert named == sorted(refused)
        if role == "agent":
            # An agent sees every ticket: the foreign ones are resumed (nothing missed
            # after seq 0 but the opening messages, which are replayed).
            assert {m["ticket"] for m in client.pending("message")} == set(foreign)
        assert client.closed is None
    finally:
        await client.close()
