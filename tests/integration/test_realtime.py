"""Presence, unread and typing across two real nodes sharing one real Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests import services
from tests.conftest import unique
from tests.servers import ServerProcess, free_port
from tests.wsclient import Client, join


def isolated_env(server_env: dict[str, str], **extra: str) -> dict[str, str]:
    """The module's database, but a Redis prefix of its own: presence counts are global."""
    return {**server_env, "POMOC_REDIS_PREFIX": f"{services.REDIS_PREFIX}{uuid.uuid4().hex[:6]}:", **extra}


@pytest.fixture(params=["redis", "embedded"])
def pair(request, server_env, tmp_path):
    """Two nodes sharing real Redis; or, with the embedded in-process stand-in (the
    README's first command), one node serving as both: its Lua scripts must behave
    exactly like Redis's."""
    env = isolated_env(server_env, POMOC_PRESENCE_TTL="2", POMOC_HEARTBEAT="0.5")
    if request.param == "embedded":
        node = ServerProcess({**env, "REDIS_URL": "memory://"}, log_path=tmp_path / "embedded.log").start()
        yield [node, node]
        node.stop(signal.SIGKILL)
        return
    nodes = [ServerProcess(dict(env), log_path=tmp_path / f"node-{i}.log").start() for i in range(2)]
    yield nodes
    for node in nodes:
        node.stop(signal.SIGKILL)


def separate_nodes(a: ServerProcess, b: ServerProcess) -> None:
    if a is b:
        pytest.skip("needs two processes sharing a Redis server (the embedded stand-in lives in one process)")




async def test_badge_flips_on_reply_and_clears_on_read_on_every_tab_and_node(pair, clients, tokens, shop):
    a, b = pair
    token = tokens.customer(shop)
    tab_a, _ = await join(a, clients, token)
    tab_b, _ = await join(b, clients, token)
    ticket = (await tab_a.request({"type": "open_ticket", "title": "Płatności", "body": "Nie działa",
                                   "client_id": "o1"}, "ticket"))["ticket"]
    agent, _ = await join(b, clients, tokens.agent(unique("a")))
    await agent.request({"type": "follow", "ticket": ticket["id"]}, "ticket")
    ack = await agent.request({"type": "send", "ticket": ticket["id"], "body": "Już patrzę"}, "ack")
    key = str(ticket["id"])
    # Pushed to every tab on both nodes (nothing else would bring it before a reconnect).
    for tab in (tab_a, tab_b):
        frame = await tab.expect("unread", where=lambda f: f["tickets"].get(key) == 1)
        assert frame["badge"] is True
    await tab_b.send({"type": "read", "ticket": ticket["id"], "seq": ack["seq"]})
    for tab in (tab_a, tab_b):
        frame = await tab.expect("unread", where=lambda f: f["tickets"].get(key) == 0)
        assert frame["badge"] is False
    # The agent's own message never counts for the agent; the customer's does.
    reply = await tab_a.request({"type": "send", "ticket": ticket["id"], "body": "Dzięki"}, "ack")
    await agent.send({"type": "read", "ticket": ticket["id"], "seq": reply["seq"] - 1})
    frame = await agent.expect("unread", where=lambda f: key in f["tickets"])
    assert frame["tickets"][key] == 1 and frame["badge"] is True


async def test_colleagues_in_one_shop_have_their_own_unread(pair, clients, tokens, shop):
    a, b = pair
    owner, _ = await join(a, clients, tokens.customer(shop, sub="owner"))
    clerk, _ = await join(b, clients, tokens.customer(shop, sub="clerk"))
    ticket = (await owner.request({"type": "open_ticket", "title": "Zwroty", "body": "?", "client_id": "o"},
                                  "ticket"))["ticket"]
    key = str(ticket["id"])
    # The clerk sees the owner's message and the acknowledgment as unread; the owner does not.
    await clerk.expect("unread", where=lambda f: f["tickets"].get(key) == 2)
    await owner.request({"type": "ping"}, "pong")
    assert not [f for f in owner.pending("unread") if f["tickets"].get(key)]


async def test_presence_is_aggregated_over_tabs_and_reaches_customers(pair, clients, tokens, shop):
    a, b = pair
    customer, welcome = await join(a, clients, tokens.customer(shop))
    assert welcome["agents_online"] == 0
    agent_id = unique("agent")
    token = tokens.agent(agent_id)
    watcher, _ = await join(a, clients, tokens.agent(unique("watcher")))
    await customer.expect("presence", agents_online=1)
    tabs = [(await join(node, clients, token))[0] for node in (a, b, b)]
    await watcher.expect("presence", agent=agent_id, status="online")
    await customer.expect("presence", agents_online=2)
    await tabs[0].send({"type": "presence", "status": "away"})
    await watcher.expect("presence", agent=agent_id, status="away")
    await customer.expect("presence", agents_online=1)
    await tabs[1].send({"type": "presence", "status": "online"})
    await watcher.expect("presence", agent=agent_id, status="online")
    await tabs[0].close()
    await tabs[1].close()
    await tabs[2].request({"type": "ping"}, "pong")
    assert not [f for f in watcher.pending("presence") if f.get("agent") == agent_id]
    await tabs[2].close()
    await watcher.expect("presence", agent=agent_id, status="offline")
    await customer.expect("presence", agents_online=1)
    fresh, welcome = await join(b, clients, tokens.customer(unique("shop")))
    assert welcome["agents_online"] == 1


async def test_a_killed_node_takes_its_agents_offline(pair, clients, tokens, shop):
    a, b = pair
    separate_nodes(a, b)
    customer, _ = await join(a, clients, tokens.customer(shop))
    agent_id = unique("agent")
    await join(b, clients, tokens.agent(agent_id))
    await customer.expect("presence", agents_online=1)
    started = time.monotonic()
    b.stop(signal.SIGKILL)
    await customer.expect("presence", agents_online=0, timeout=45)
    assert time.monotonic() - started < 45


async def test_agents_see_whether_the_customer_is_connected(pair, clients, tokens, shop):
    a, b = pair
    customer, _ = await join(a, clients, tokens.customer(shop))
    ticket = (await customer.request({"type": "open_ticket", "title": "Kurier", "body": "?", "client_id": "o"},
                                     "ticket"))["ticket"]
    agent, _ = await join(b, clients, tokens.agent(unique("a")))
    followed = await agent.request({"type": "follow", "ticket": ticket["id"]}, "ticket")
    assert followed["ticket"]["customer_online"] is True
    await customer.close()
    gone = await agent.expect("customer_presence", shop=shop)
    assert gone["online"] is False
    again = await agent.request({"type": "follow", "ticket": ticket["id"]}, "ticket")
    assert again["ticket"]["customer_online"] is False


async def test_a_crowd_of_one_shop_leaving_at_once_takes_the_shop_offline_once(pair, clients, tokens, shop):
    """Leavings at once go to Redis together: the shop is online until the last one goes,
    then offline, announced once; every other shop's presence is untouched."""
    a, b = pair
    other = unique("shop")
    stays, _ = await join(a, clients, tokens.customer(other))
    crowd = [(await join(a, clients, tokens.customer(shop, f"user-{n}")))[0] for n in range(24)]
    ticket = (await crowd[0].request({"type": "open_ticket", "title": "Kurier", "body": "?", "client_id": "o"},
                                     "ticket"))["ticket"]
    agent, _ = await join(b, clients, tokens.agent(unique("a")))
    followed = await agent.request({"type": "follow", "ticket": ticket["id"]}, "ticket")
    assert followed["ticket"]["customer_online"] is True
    await asyncio.gather(*(c.close() for c in crowd[1:]))
    await crowd[0].request({"type": "ping"}, "pong")
    again = await agent.request({"type": "follow", "ticket": ticket["id"]}, "ticket")
    assert again["ticket"]["customer_online"] is True  # one is still here
    assert not agent.pending("customer_presence")
    await crowd[0].close()
    gone = await agent.expect("customer_presence", shop=shop)
    assert gone["online"] is False
    await agent.request({"type": "ping"}, "pong")
    assert [f for f in agent.pending("customer_presence") if f.get("shop") == shop] == []
    assert (await agent.request({"type": "follow", "ticket": ticket["id"]}, "ticket"))["ticket"][
        "customer_online"] is False
    await stays.request({"type": "ping"}, "pong")


async def test_a_crowd_of_one_shop_arriving_at_once_brings_the_shop_online_once(pair, clients, tokens, shop):
    """Arrivals at once go to Redis together: the first of them brings the shop online,
    announced once; the others find it online already."""
    a, b = pair
    first, _ = await join(a, clients, tokens.customer(shop, "opener"))
    ticket = (await first.request({"type": "open_ticket", "title": "Zwroty", "body": "?", "client_id": "o"},
                                  "ticket"))["ticket"]
    agent, _ = await join(b, clients, tokens.agent(unique("a")))
    await agent.request({"type": "follow", "ticket": ticket["id"]}, "ticket")
    await first.close()
    assert (await agent.expect("customer_presence", shop=shop))["online"] is False
    crowd = [await Client.connect(a.url) for _ in range(24)]
    clients.extend(crowd)
    welcomes = await asyncio.gather(*(c.request({"type": "hello", "token": tokens.customer(shop, f"user-{n}")},
                                                "welcome") for n, c in enumerate(crowd)))
    assert {w["type"] for w in welcomes} == {"welcome"}
    back = await agent.expect("customer_presence", shop=shop)
    assert back["online"] is True
    await agent.request({"type": "ping"}, "pong")
    await crowd[-1].request({"type": "ping"}, "pong")
    assert [f for f in agent.pending("customer_presence") if f.get("shop") == shop] == []
    again = await agent.request({"type": "follow", "ticket": ticket["id"]}, "ticket")
    assert again["ticket"]["customer_online"] is True


async def test_typing_reaches_the_other_side_only_and_is_throttled(pair, clients, tokens, shop):
    a, b = pair
    customer, _ = await join(a, clients, tokens.customer(shop))
    other_tab, _ = await join(a, clients, tokens.customer(shop))
    ticket = (await customer.request({"type": "open_ticket", "title": "Kody", "body": "?", "client_id": "o"},
                                     "ticket"))["ticket"]
    agent, _ = await join(b, clients, tokens.agent(unique("a"), name="Ala"))
    await agent.request({"type": "follow", "ticket": ticket["id"]}, "ticket")
    for _ in range(5):
        await customer.send({"type": "typing", "ticket": ticket["id"]})
    got = await agent.expect("typing", ticket=ticket["id"])
    assert got["who"]["kind"] == "customer"
    await agent.send({"type": "typing", "ticket": ticket["id"]})
    assert (await customer.expect("typing"))["who"] == {"kind": "agent", "id": got["who"]["id"] and
                                                       (await other_tab.expect("typing"))["who"]["id"], "name": "Ala"}
    await agent.request({"type": "ping"}, "pong")
    await other_tab.request({"type": "ping"}, "pong")
    assert len(agent.pending("typing")) == 0, "four more within 2 s were throttled"
    assert not [f for f in other_tab.pending("typing") if f["who"]["kind"] == "customer"], "not to the same side"


async def test_unread_comes_back_exactly_after_redis_loses_everything(pair, clients, tokens, shop, redis_url):
    a, b = pair
    separate_nodes(a, b)
    token = tokens.customer(shop)
    customer, _ = await join(a, clients, token)
    tickets = []
    for title in ("Jeden", "Dwa"):
        tickets.append((await customer.request({"type": "open_ticket", "title": title, "body": "?",
                                                "client_id": title}, "ticket"))["ticket"])
    agent, _ = await join(b, clients, tokens.agent(unique("a")), feed=False)
    for ticket, count in zip(tickets, (3, 1), strict=True):
        await agent.request({"type": "follow", "ticket": ticket["id"]}, "ticket")
        for i in range(count):
            await agent.request({"type": "send", "ticket": ticket["id"], "body": f"m{i}"}, "ack")
    expected = {str(tickets[0]["id"]): 3, str(tickets[1]["id"]): 1}
    await customer.expect("unread", where=lambda f: f["tickets"].get(str(tickets[1]["id"])) == 1)
    before = (await join(a, clients, token))[1]["unread"]
    assert before == expected
    # Everything under this deployment's prefix goes, as after FLUSHALL (the shared
    # Redis of CI holds other runs' keys, so the test does not FLUSHALL it).
    prefix = a.env["POMOC_REDIS_PREFIX"]
    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=prefix + "*")]
        assert keys
        await client.delete(*keys)
    finally:
        await client.aclose()
    rebuilt = await customer.expect("unread", where=lambda f: f["tickets"] == expected, timeout=10)
    assert rebuilt["badge"] is True
    after = (await join(b, clients, token))[1]["unread"]
    assert after == expected
    # Counting goes on from there.
    await agent.request({"type": "send", "ticket": tickets[1]["id"], "body": "znowu"}, "ack")
    await customer.expect("unread", where=lambda f: f["tickets"].get(str(tickets[1]["id"])) == 2)


@pytest.fixture
def private_redis(tmp_path):
    """A Redis of the test's own, so it can be stopped and restarted empty."""
    binary = "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else "redis-server"
    port = free_port()

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--dir", str(tmp_path)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not services.reachable(f"redis://127.0.0.1:{port}"):
            if time.monotonic() > deadline:
                raise RuntimeError("private redis-server did not start")
            time.sleep(0.02)  # waiting for another process to listen, bounded
        return proc

    try:
        state = {"proc": start()}
    except FileNotFoundError:
        if services.IN_CI:
            pytest.fail("redis-server is needed for the Redis outage tests")
        pytest.skip("redis-server is not installed")

    class Handle:
        url = f"redis://127.0.0.1:{port}/0"

        def stop(self) -> None:
            state["proc"].kill()
            state["proc"].wait()

        def start(self) -> None:
            state["proc"] = start()

    yield Handle()
    state["proc"].kill()
    state["proc"].wait()


async def test_a_redis_outage_mid_conversation_loses_nothing_and_repeats_nothing(
        server_env, private_redis, clients, tokens, shop, tmp_path):
    env = {**server_env, "REDIS_URL": private_redis.url, "POMOC_HEARTBEAT": "0.5", "POMOC_PRESENCE_TTL": "2"}
    a = ServerProcess(dict(env), log_path=tmp_path / "outage-a.log").start()
    b = ServerProcess(dict(env), log_path=tmp_path / "outage-b.log").start()
    try:
        customer, _ = await join(a, clients, tokens.customer(shop))
        ticket = (await customer.request({"type": "open_ticket", "title": "Awaria", "body": "?", "client_id": "o"},
                                         "ticket"))["ticket"]
        agent, _ = await join(b, clients, tokens.agent(unique("a")))
        await agent.request({"type": "follow", "ticket": ticket["id"]}, "ticket")
        first = await customer.request({"type": "send", "ticket": ticket["id"], "body": "przed"}, "ack")
        await agent.expect("message", seq=first["seq"])

        private_redis.stop()
        during = [await customer.request({"type": "send", "ticket": ticket["id"], "body": f"w trakcie {i}"},
                                         "ack", timeout=15) for i in range(3)]
        assert all(f["type"] == "ack" for f in during), during
        reply = await agent.request({"type": "send", "ticket": ticket["id"], "body": "odpowiedź"}, "ack", timeout=15)
        assert reply["type"] == "ack"
        # A customer who connects meanwhile is let in (admission fails open) with its
        # tickets and unread counts from the database, and may leave again.
        newcomer, hello = await join(a, clients, tokens.customer(shop, sub="colleague"))
        assert hello["type"] == "welcome" and ticket["id"] in [t["id"] for t in hello["tickets"]]
        assert hello["unread"].get(str(ticket["id"])) == reply["seq"]  # a new colleague has read nothing
        await newcomer.close()

        private_redis.start()
        got = [await agent.expect("message", ticket=ticket["id"], timeout=30) for _ in during]
        assert [m["seq"] for m in got] == [f["seq"] for f in during]
        assert (await customer.expect("message", seq=reply["seq"], timeout=30))["body"] == "odpowiedź"
        after = await customer.request({"type": "send", "ticket": ticket["id"], "body": "po"}, "ack")
        assert (await agent.expect("message", ticket=ticket["id"]))["seq"] == after["seq"]
        await agent.request({"type": "ping"}, "pong")
        assert not agent.pending("message"), "nothing twice"
        # Presence re-forms within a heartbeat on the empty Redis: the agent on B is
        # online again for a customer who connects now.
        deadline = time.monotonic() + 30
        while True:
            probe, welcome = await join(a, clients, tokens.customer(unique("shop")))
            await probe.close()
            if welcome["agents_online"] == 1:
                break
            assert time.monotonic() < deadline, "presence did not re-form"
            await probe.wait_closed()  # one probe at a time, paced by the round trip
    finally:
        a.stop(signal.SIGKILL)
        b.stop(signal.SIGKILL)
        for log in (Path(tmp_path / "outage-a.log"), Path(tmp_path / "outage-b.log")):
            assert "Traceback" not in log.read_text(errors="replace")
