"""Redis frozen (SIGSTOP), not killed, under two real nodes chatting over it.

A frozen Redis accepts connections and bytes and answers nothing; when it wakes it
runs everything that queued up meanwhile. The chat must go on as when Redis is down
(every send acknowledged within seconds, hellos welcomed, no socket cut with 1011),
and nothing that waited in Redis's buffers may land late: no burst of
`rate_limited` or refused reconnects after the thaw. Delivery between the nodes
resumes live, and every acknowledged message is stored once and reaches the other
side once, in order (live or on resume).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from server.realtime.keys import Keys
from server.rules.limits import Limit, Limits
from server.settings import Settings
from tests import services
from tests.conftest import Tokens, unique
from tests.private import PrivateRedis, thaw
from tests.servers import ServerProcess

FREEZE = 25.0  # seconds Redis stays stopped: the attack itself
ACK_BUDGET = 6.0  # seconds a send may wait for its ack (or error) while Redis is frozen
HELLO_BUDGET = 6.0  # seconds a fresh hello may wait for its welcome
CUSTOMERS = 6
SEND_EVERY = 0.5  # each customer, without waiting for acks (below the default 30/10s)
AGENT_EVERY = 0.4  # the agent, round-robin over the tickets (below the default 60/10s)


@dataclass
class Sent:
    ticket: int
    client_id: str
    at: float
    answered: float | None = None
    reply: dict[str, Any] | None = None


@dataclass
class Talker:
    """One user's connection, as the widget or the console keeps it: sends at its own
    pace without waiting for acks, reconnects and resumes when the server closes it."""

    name: str
    node: ServerProcess
    token: str
    agent: bool = False
    sent: dict[str, Sent] = field(default_factory=dict)
    errors: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    # Per ticket: where this user started following, seqs received as `message`
    # frames (live or replayed, in arrival order) and its own acknowledged seqs.
    base: dict[int, int] = field(default_factory=dict)
    received: dict[int, list[int]] = field(default_factory=dict)
    own: dict[int, set[int]] = field(default_factory=dict)
    closes: list[tuple[float, int]] = field(default_factory=list)
    hellos: list[float] = field(default_factory=list)
    ws: ClientConnection | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: bool = False
    task: asyncio.Task[None] | None = None
    answers: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    _refs: int = 0

    def start(self) -> None:
        self.task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        self.stopping = True
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 3)
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task

    def follow(self, ticket: int, last_seq: int) -> None:
        self.base.setdefault(ticket, last_seq)
        self.received.setdefault(ticket, [])
        self.own.setdefault(ticket, set())

    def resume(self) -> dict[str, int]:
        """The last seq of each ticket up to which this user has everything."""
        out: dict[str, int] = {}
        for ticket, base in self.base.items():
            have = set(self.received[ticket]) | self.own[ticket]
            last = base
            while last + 1 in have:
                last += 1
            out[str(ticket)] = last
        return out

    async def _run(self) -> None:
        while not self.stopping:
            try:
                async with connect(self.node.url, subprotocols=["pomoc.v1.json"],  # type: ignore[list-item]
                                   open_timeout=30, close_timeout=2, max_size=None) as ws:
                    self.ws = ws
                    started = time.monotonic()
                    hello: dict[str, Any] = {"type": "hello", "token": self.token, "ref": "hello"}
                    if self.base:
                        hello["resume"] = self.resume()
                    await ws.send(json.dumps(hello))
                    async for raw in ws:
                        frame = json.loads(raw)
                        if frame.get("type") == "welcome":
                            self.hellos.append(time.monotonic() - started)
                            self.ready.set()
                        self._take(frame)
            except ConnectionClosed:
                pass
            except OSError:
                pass
            finally:
                self.ready.clear()
            ws_ = self.ws
            self.ws = None
            if ws_ is not None and not self.stopping:
                self.closes.append((time.monotonic(), ws_.close_code or 1006))
            if not self.stopping:
                await asyncio.sleep(0.5)  # the widget's reconnect backoff (client behaviour)

    def _take(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        now = time.monotonic()
        ref = frame.get("ref")
        answer = self.answers.pop(ref, None) if isinstance(ref, str) else None
        if answer is not None and not answer.done():
            answer.set_result(frame)
        if kind == "message" and frame["ticket"] in self.base:
            self.received[frame["ticket"]].append(frame["seq"])
        elif kind in ("ack", "error") and isinstance(ref, str) and ref in self.sent:
            sent = self.sent[ref]
            if sent.answered is None:
                sent.answered, sent.reply = now, frame
            if kind == "ack":
                self.own[frame["ticket"]].add(frame["seq"])
        if kind == "error":
            self.errors.append((now, frame))
        self.arrived.set()

    async def send(self, ticket: int, body: str) -> Sent | None:
        ws = self.ws
        if ws is None or not self.ready.is_set():
            return None  # reconnecting: the widget would keep it in its outbox
        self._refs += 1
        ref = f"{self.name}-{self._refs}"
        sent = Sent(ticket, f"{self.name}-{uuid.uuid4().hex[:8]}", time.monotonic())
        self.sent[ref] = sent
        try:
            await ws.send(json.dumps({"type": "send", "ticket": ticket, "body": body, "client_id": sent.client_id,
                                      "ref": ref}))
        except ConnectionClosed:
            del self.sent[ref]
            return None
        return sent

    async def request(self, frame: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """A request answered by `ref` (setup and checks, not the load)."""
        await asyncio.wait_for(self.ready.wait(), timeout)
        assert self.ws is not None
        self._refs += 1
        ref = f"{self.name}-q{self._refs}"
        answer = self.answers[ref] = asyncio.get_running_loop().create_future()
        await self.ws.send(json.dumps({**frame, "ref": ref}))
        return await asyncio.wait_for(answer, timeout)

    async def until(self, check: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not check():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), left)
        return True


@pytest.fixture
def frozen_pair(server_env, tmp_path):
    """Two nodes on a Redis of the test's own (to freeze), sharing the module's
    database, with the fair-use limits at their defaults."""
    redis = PrivateRedis().start()
    env = {k: v for k, v in server_env.items() if not k.startswith("POMOC_RATE_")}
    env.update({"REDIS_URL": redis.url, "POMOC_REDIS_PREFIX": f"{services.REDIS_PREFIX}{uuid.uuid4().hex[:6]}:",
                "POMOC_HEARTBEAT": "1", "POMOC_PRESENCE_TTL": "5", "POMOC_HELLO_TIMEOUT": "10"})
    nodes: list[ServerProcess] = []
    try:
        nodes = [ServerProcess(dict(env), log_path=tmp_path / f"hang-{i}.log").start() for i in range(2)]
        yield redis, nodes
    finally:
        for node in nodes:
            node.stop(signal.SIGKILL)
        redis.stop()


async def _hello_probe(node: ServerProcess, token: str, results: list[tuple[float, str]]) -> None:
    started = time.monotonic()
    try:
        async with connect(node.url, subprotocols=["pomoc.v1.json"], open_timeout=40,  # type: ignore[list-item]
                           close_timeout=2) as ws:
            await ws.send(json.dumps({"type": "hello", "token": token, "ref": "h"}))
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 40))
                if frame.get("ref") == "h":
                    results.append((time.monotonic() - started, frame["type"]))
                    return
    except (ConnectionClosed, OSError, TimeoutError) as exc:
        results.append((time.monotonic() - started, f"failed: {type(exc).__name__}"))


async def test_a_frozen_redis_blocks_nothing_and_nothing_lands_late(frozen_pair, tokens: Tokens, tmp_path):
    redis, (a, b) = frozen_pair
    shops = [unique("shop") for _ in range(CUSTOMERS)]
    customers = [Talker(f"c{i}", (a, b)[i % 2], tokens.customer(shops[i], sub=f"owner{i}"))
                 for i in range(CUSTOMERS)]
    agent = Talker("agent", b, tokens.agent(unique("agent")), agent=True)
    everyone = [*customers, agent]
    tickets: list[int] = []
    load: list[asyncio.Task[None]] = []
    try:
        for talker in everyone:
            talker.start()
        for customer in customers:
            reply = await customer.request({"type": "open_ticket", "title": "Zamówienia", "body": "Nie widzę zamówień",
                                            "client_id": unique("open")})
            assert reply["type"] == "ticket", reply
            ticket = reply["ticket"]
            tickets.append(ticket["id"])
            customer.follow(ticket["id"], ticket["last_seq"])
        for ticket_id in tickets:
            followed = await agent.request({"type": "follow", "ticket": ticket_id})
            assert followed["type"] == "ticket", followed
            agent.follow(ticket_id, followed["ticket"]["last_seq"])

        async def chat(talker: Talker, targets: list[int], every: float) -> None:
            n = 0
            while True:
                n += 1
                await talker.send(targets[n % len(targets)], f"{talker.name} {n}")
                await asyncio.sleep(every)  # the user's own pace (load, not synchronization)

        load = [asyncio.ensure_future(chat(c, [t], SEND_EVERY)) for c, t in zip(customers, tickets, strict=True)]
        load.append(asyncio.ensure_future(chat(agent, tickets, AGENT_EVERY)))
        # Chatting normally first: delivery works across the nodes.
        assert await agent.until(lambda: all(agent.received[t] for t in tickets), 15), "no live delivery before"

        frozen_at = time.monotonic()
        pids = redis.freeze()
        probes: list[tuple[float, str]] = []
        probe_tasks: list[asyncio.Task[None]] = []
        try:
            for i in range(int(FREEZE)):
                node = (a, b)[i % 2]
                token = tokens.agent(unique("late-agent")) if i % 3 == 2 else tokens.customer(shops[i % CUSTOMERS],
                                                                                             sub=unique("newcomer"))
                probe_tasks.append(asyncio.ensure_future(_hello_probe(node, token, probes)))
                await asyncio.sleep(1.0)  # one newcomer a second while Redis is frozen (the attack's pace)
            await asyncio.sleep(max(0.0, FREEZE - (time.monotonic() - frozen_at)))
        finally:
            thawed_at = time.monotonic()
            thaw(pids)
        await asyncio.gather(*probe_tasks)

        # After the thaw: chatting on for a while, then the live path is checked.
        await asyncio.sleep(12)  # the load keeps running: any late charge would show up as rate_limited now
        for task in load:
            task.cancel()
        await asyncio.gather(*load, return_exceptions=True)
        live_from = time.monotonic()
        probe = await customers[0].request({"type": "send", "ticket": tickets[0], "body": "po odmrożeniu",
                                            "client_id": unique("after")})
        assert probe["type"] == "ack", probe
        customers[0].own[tickets[0]].add(probe["seq"])
        reply = await agent.request({"type": "send", "ticket": tickets[0], "body": "odpowiedź po odmrożeniu",
                                     "client_id": unique("after")})
        assert reply["type"] == "ack", reply
        agent.own[tickets[0]].add(reply["seq"])
        got_live = await agent.until(lambda: probe["seq"] in agent.received[tickets[0]], 5)
        got_reply = await customers[0].until(lambda: reply["seq"] in customers[0].received[tickets[0]], 5)
        live_delay = time.monotonic() - live_from

        # Everything acknowledged is stored exactly once; both sides got it once, in order.
        checker = Talker("checker", a, tokens.agent(unique("checker")), agent=True)
        checker.start()
        stored: dict[int, list[dict[str, Any]]] = {}
        for ticket_id in tickets:
            messages: list[dict[str, Any]] = []
            after = 0
            while True:
                page = await checker.request({"type": "history", "ticket": ticket_id, "after_seq": after,
                                              "limit": 200})
                assert page["type"] == "history", page
                messages += page["messages"]
                if not page["more"] or not page["messages"]:
                    break
                after = page["messages"][-1]["seq"]
            stored[ticket_id] = messages
        await checker.stop()
        last = {t: msgs[-1]["seq"] for t, msgs in stored.items()}

        def complete(talker: Talker) -> bool:
            return all(set(talker.received[t]) | talker.own[t] >= set(range(talker.base[t] + 1, last[t] + 1))
                       for t in talker.base)

        for talker in everyone:
            assert await talker.until(lambda talker=talker: complete(talker), 20), f"{talker.name} missed messages"
    finally:
        for task in load:
            task.cancel()
        for talker in everyone:
            await talker.stop()

    sends = [s for t in everyone for s in t.sent.values()]
    during = [s for s in sends if frozen_at <= s.at <= thawed_at]
    waits = [(s.answered or time.monotonic()) - s.at for s in during]
    slowest_ack = max(waits, default=0.0)
    unanswered = [s for s in sends if s.answered is None]
    slowest_hello = max((p[0] for p in probes), default=0.0)
    limited_after = [e for t in everyone for at, e in t.errors if at >= thawed_at and e.get("code") == "rate_limited"]
    limited_total = [e for t in everyone for _, e in t.errors if e.get("code") == "rate_limited"]
    closes = [(t.name, round(at - frozen_at, 1), code) for t in everyone for at, code in t.closes]
    print(f"\nfrozen for {thawed_at - frozen_at:.1f} s; sends during the freeze: {len(during)}, "
          f"slowest ack {slowest_ack:.2f} s, unanswered {len(unanswered)}; hellos: {len(probes)}, "
          f"slowest welcome {slowest_hello:.2f} s ({sorted({p[1] for p in probes})}); "
          f"rate_limited after the thaw: {len(limited_after)} (in all {len(limited_total)}); "
          f"closes (who, s after the freeze, code): {closes}; live again after the thaw: "
          f"{got_live and got_reply} in {live_delay:.2f} s")

    assert slowest_ack < ACK_BUDGET, f"a send waited {slowest_ack:.1f} s for its ack while Redis was frozen"
    assert not unanswered, f"{len(unanswered)} sends never answered"
    assert len(probes) == int(FREEZE) and all(kind == "welcome" for _, kind in probes), probes
    assert slowest_hello < HELLO_BUDGET, f"a hello waited {slowest_hello:.1f} s for its welcome"
    assert not [c for c in closes if c[2] == 1011], f"sockets cut with 1011: {closes}"
    assert not limited_after, f"{len(limited_after)} rate_limited after the thaw (late charges)"
    assert not closes, f"connections closed: {closes}"
    assert got_live and got_reply, "delivery between the nodes did not resume live"
    errors = [e for t in everyone for _, e in t.errors]
    assert not errors, errors[:5]

    acked = [(s.ticket, s.reply["seq"], s.client_id) for s in sends if s.reply and s.reply["type"] == "ack"]
    for ticket_id, seq, client_id in acked:
        found = [m for m in stored[ticket_id] if m["client_id"] == client_id]
        assert [m["seq"] for m in found] == [seq], (ticket_id, client_id, found)
    for talker in everyone:
        for ticket_id, seqs in talker.received.items():
            assert seqs == sorted(set(seqs)), f"{talker.name} got ticket {ticket_id} out of order or twice: {seqs}"
            assert not set(seqs) & talker.own[ticket_id], f"{talker.name} got its own messages back"
    for log in (Path(tmp_path / "hang-0.log"), Path(tmp_path / "hang-1.log")):
        assert "Traceback" not in log.read_text(errors="replace"), log


async def test_calls_that_missed_their_deadline_change_nothing_when_redis_wakes():
    """What a frozen Redis took in and carries out when it wakes — rate-limit
    charges, admissions, publishes — finds its deadline passed and does nothing."""
    # Imported here: the test above also runs against code that predates these.
    from server.realtime.admission import Connections
    from server.realtime.bus import Bus
    from server.realtime.clients import open_redis
    from server.realtime.health import RedisDown, RedisHealth
    from server.realtime.ratelimit import RateLimiter
    from server.realtime.unread import UnreadBook

    server = PrivateRedis().start()
    health = RedisHealth(0.5)
    redis, subscriber, probe = open_redis(Settings(redis_url=server.url, redis_timeout=timedelta(seconds=0.5)),
                                          health)
    prober = asyncio.ensure_future(health.run(probe.time))
    came_up = asyncio.Event()

    async def up() -> None:
        came_up.set()

    health.on_up(up)
    keys = Keys(f"late-{uuid.uuid4().hex[:6]}:")
    limit = Limit(30, timedelta(seconds=10))
    limiter = RateLimiter(redis, keys, Limits(), health)
    connections = Connections(redis, keys, timedelta(seconds=30), health)
    book = UnreadBook(redis, keys, health)
    bus = Bus(redis, subscriber, lambda channel, payload: None, health)
    channel = keys.shop_channel("s1")
    listener = Redis.from_url(server.url).pubsub()
    calls = 40
    try:
        await listener.subscribe(channel)
        assert (await listener.get_message(timeout=5))["type"] == "subscribe"
        # Scripts loaded and a connection in the pool for every call that will be in
        # flight when Redis stops (as on a busy node).
        assert await limiter.check(_now_ms(), ("user", "warm", limit)) == 0.0
        assert await bus.publish(keys.shop_channel("warm"), b"warm")
        await book.publish_and_count("n1", [(keys.shop_channel("warm"), b"warm", 1, 1, "c:x", "all")])
        await connections.open("c:warm", "warm", datetime.now(UTC), 20)
        await asyncio.gather(*(redis.ping() for _ in range(calls + 10)))

        pids = server.freeze()
        try:
            started = time.monotonic()
            outcomes = await asyncio.gather(
                *(limiter.check(_now_ms(), ("user", "u1", limit)) for _ in range(calls)),
                *(connections.open("c:u1", f"conn-{i}", datetime.now(UTC), 3) for i in range(5)),
                book.publish_and_count("n1", [(channel, b"late batch", 1, 2, "c:x", "all")]),
                bus.publish(channel, b"late event"), return_exceptions=True)
            took = time.monotonic() - started
            checks, admissions, batch, event = (outcomes[:calls], outcomes[calls:calls + 5], outcomes[-2],
                                                outcomes[-1])
            assert checks == [0.0] * calls, "limits fail open"
            assert all(isinstance(x, RedisDown) for x in admissions), admissions
            assert isinstance(batch, RedisDown) and event is False
            assert took < 2.0, f"the calls took {took:.2f} s against a deadline of 0.5 s"
            assert not health.up
            started = time.monotonic()
            assert await limiter.check(_now_ms(), ("user", "u1", limit)) == 0.0
            assert time.monotonic() - started < 0.1, "known down: skipped without waiting"
        finally:
            thaw(pids)
        await asyncio.wait_for(came_up.wait(), 10)

        # Redis carried out what it had taken in (its replies go out only after the
        # batch it woke up to: all of it ran before the probe's answer) ...
        stats = await redis.info("commandstats")
        assert stats["cmdstat_evalsha"]["calls"] >= calls + 5 + 2
        # ... and none of it acted: the bucket is untouched, no connection counted,
        # nothing published.
        assert await redis.get(keys.rate("user", "u1")) is None
        assert [await limiter.check(_now_ms(), ("user", "u1", limit)) for _ in range(30)] == [0.0] * 30
        assert await limiter.check(_now_ms(), ("user", "u1", limit)) > 0
        assert not await redis.hgetall(keys.connections("c:u1"))
        assert await bus.publish(channel, b"after")
        first = await listener.get_message(timeout=5)
        assert first is not None and first["data"] == b"after", first
    finally:
        prober.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await prober
        await listener.aclose()
        await subscriber.aclose()
        await redis.aclose()
        await redis.connection_pool.disconnect()
        server.stop()


def _now_ms() -> int:
    return int(time.time() * 1000)
