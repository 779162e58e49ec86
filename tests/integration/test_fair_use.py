"""Fair use: limits shared by all nodes, persistent abuse, resource bounds."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import socket
import time
import uuid

import pytest
from websockets.asyncio.client import connect

from tests import services
from tests.conftest import unique
from tests.servers import ServerProcess
from tests.wsclient import Client, join


@pytest.fixture(scope="module")
def limited(server_env, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fair")
    env = {k: v for k, v in server_env.items() if not k.startswith("POMOC_RATE_")}
    env.update({"POMOC_REDIS_PREFIX": f"{services.REDIS_PREFIX}{uuid.uuid4().hex[:6]}:",
                "POMOC_RATE_USER_MESSAGES": "10/1m", "POMOC_RATE_SHOP_MESSAGES": "15/1m",
                "POMOC_RATE_SHOP_TICKETS": "3/1d", "POMOC_MAX_USER_CONNECTIONS": "3",
                "POMOC_MAX_RATE_LIMITED": "20", "POMOC_SEND_QUEUE_MAX": "200", "POMOC_RATE_AGENT_MESSAGES": "off",
                # The slow reader reads again once its flood is stored, however long that takes here.
                "POMOC_CLOSE_GRACE": "300"})
    nodes = [ServerProcess(dict(env), log_path=tmp / f"fair-{i}.log").start() for i in range(2)]
    yield nodes
    for node in nodes:
        node.stop(signal.SIGKILL)




async def open_ticket(client: Client) -> dict:
    reply = await client.request({"type": "open_ticket", "title": "Limit", "body": "?",
                                  "client_id": str(uuid.uuid4())}, "ticket")
    assert reply["type"] == "ticket", reply
    return reply["ticket"]


async def test_message_limits_are_shared_across_nodes_and_say_when_to_retry(limited, clients, tokens, shop):
    a, b = limited
    tab_a, _ = await join(a, clients, tokens.customer(shop, sub="flooder"))
    tab_b, _ = await join(b, clients, tokens.customer(shop, sub="flooder"))
    ticket = await open_ticket(tab_a)
    replies = []
    for i in range(12):
        tab = tab_a if i % 2 else tab_b
        replies.append(await tab.request({"type": "send", "ticket": ticket["id"], "body": f"m{i}"}, "ack"))
    kinds = [r["type"] for r in replies]
    # 10 per user in the burst, the ticket itself took one: the rest wait, on both nodes.
    assert kinds.count("ack") == 9 and kinds[-1] == "error"
    limited_reply = replies[-1]
    assert limited_reply["code"] == "rate_limited" and 0 < limited_reply["retry_after"] <= 60
    # Another user of the same shop still has room until the shop's own limit.
    colleague, _ = await join(a, clients, tokens.customer(shop, sub="colleague"))
    ok = await colleague.request({"type": "send", "ticket": ticket["id"], "body": "inny"}, "ack")
    assert ok["type"] == "ack"
    # Another shop is not affected at all.
    other, _ = await join(b, clients, tokens.customer(unique("shop")))
    other_ticket = await open_ticket(other)
    assert (await other.request({"type": "send", "ticket": other_ticket["id"], "body": "x"}, "ack"))["type"] == "ack"


async def test_new_tickets_per_shop_per_day(limited, clients, tokens, shop):
    a, _ = limited
    customer, _ = await join(a, clients, tokens.customer(shop))
    for _ in range(3):
        await open_ticket(customer)
    refused = await customer.request({"type": "open_ticket", "title": "Czwarte", "body": "?"}, "ticket")
    assert refused["code"] == "rate_limited" and refused["retry_after"] > 3600


async def test_persistent_abuse_closes_with_4429(limited, clients, tokens, shop):
    a, _ = limited
    customer, _ = await join(a, clients, tokens.customer(shop))
    ticket = await open_ticket(customer)
    for i in range(60):
        await customer.send({"type": "send", "ticket": ticket["id"], "body": f"spam {i}"})
    assert await customer.wait_closed(timeout=20) == 4429
    errors = customer.pending("error")
    assert errors and all(e["code"] == "rate_limited" and e["retry_after"] > 0 for e in errors)
    # Reconnecting at once does not help: the user cools down first (cheaply, before
    # any database work), on every node.
    for node in limited:
        again = await Client.connect(node.url)
        clients.append(again)
        await again.send({"type": "hello", "token": tokens.customer(shop)})
        refused = await again.expect("error")
        assert refused["code"] == "rate_limited" and 0 < refused["retry_after"] <= 10
        assert await again.wait_closed() == 4429


async def test_connections_per_user_are_limited_across_nodes(limited, clients, tokens, shop):
    a, b = limited
    token = tokens.customer(shop, sub="tabs")
    opened = [await join(node, clients, token) for node in (a, b, a)]
    assert len(opened) == 3
    extra = await Client.connect(b.url)
    clients.append(extra)
    await extra.send({"type": "hello", "token": token})
    error = await extra.expect("error")
    assert error["code"] == "rate_limited"
    assert await extra.wait_closed() == 4429
    await opened[0][0].close()
    again = await Client.connect(b.url)
    clients.append(again)
    deadline = time.monotonic() + 10
    welcome = await again.request({"type": "hello", "token": token}, "welcome")
    while welcome["type"] != "welcome" and time.monotonic() < deadline:
        again = await Client.connect(b.url)  # the closed tab is released as soon as its node notices
        clients.append(again)
        welcome = await again.request({"type": "hello", "token": token}, "welcome")
    assert welcome["type"] == "welcome"


async def test_tabs_of_one_user_saying_hello_at_once_are_admitted_up_to_the_limit(limited, clients, tokens, shop):
    """Arrivals at once go to Redis together; each still counts against the others."""
    a, _ = limited
    token = tokens.customer(shop, sub=unique("crowd"))
    tabs = [await Client.connect(a.url) for _ in range(7)]
    clients.extend(tabs)
    answers = await asyncio.gather(*(tab.request({"type": "hello", "token": token}, "welcome") for tab in tabs))
    kinds = sorted(answer["type"] for answer in answers)
    assert kinds == ["error"] * 4 + ["welcome"] * 3
    assert {answer["code"] for answer in answers if answer["type"] == "error"} == {"rate_limited"}


async def test_a_slow_reader_is_disconnected_instead_of_growing_the_server(limited, clients, tokens, shop):
    a, _ = limited
    customer, _ = await join(a, clients, tokens.customer(shop))
    ticket = await open_ticket(customer)
    # A reader that stops reading: the client library takes one frame, its socket a
    # few kilobytes, then everything piles up on the server's side.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", a.port))
    slow = await connect(a.url, sock=sock, subprotocols=["pomoc.v1.json"], max_queue=1, max_size=None)
    await slow.send(json.dumps({"type": "hello", "token": tokens.agent(unique("slow"), name="Wolny"),
                                "feed": False}))
    await slow.send(json.dumps({"type": "follow", "ticket": ticket["id"]}))
    agent, _ = await join(a, clients, tokens.agent(unique("fast")), feed=False)
    count = 1500  # 13 MB: far more than the socket buffers on both sides hold
    for i in range(count):
        # Random text: compression (permessage-deflate) must not shrink the flood away.
        body = secrets.token_urlsafe(6700)
        await agent.send({"type": "send", "ticket": ticket["id"], "body": body, "client_id": f"big{i}"})
    await agent.expect("ack", client_id=f"big{count - 1}", timeout=120)
    received = 0
    try:
        while True:
            await asyncio.wait_for(slow.recv(), 5)  # now read: the frames the server kept, then its close
            received += 1
    except Exception:  # noqa: BLE001 - ConnectionClosed (expected) or a timeout (the assert tells)
        pass
    assert slow.close_code == 1013, (slow.close_code, received)
    assert received < count, "the server stopped queueing for it instead of buffering everything"
    # The server is fine and the chat goes on.
    assert (await agent.request({"type": "ping"}, "pong"))["type"] == "pong"


async def test_a_shop_whose_critical_claims_keep_being_downgraded_is_told_its_next_one_counts_as_major(
        server, clients, tokens, shop):
    customer, _ = await join(server, clients, tokens.customer(shop))
    agent, _ = await join(server, clients, tokens.agent(unique("a")))
    for i in range(3):
        claim = (await customer.request({"type": "open_ticket", "title": f"Pilne {i}", "body": "Wszystko stoi!",
                                         "severity": "critical", "client_id": str(uuid.uuid4())}, "ticket"))["ticket"]
        assert claim["severity"] == "critical"
        lowered = await agent.request({"type": "update_ticket", "ticket": claim["id"], "severity": "minor"}, "ticket")
        assert lowered["ticket"]["severity"] == "minor"
    fourth = (await customer.request({"type": "open_ticket", "title": "Znowu pilne", "body": "Nie działa!",
                                      "severity": "critical", "client_id": str(uuid.uuid4())}, "ticket"))["ticket"]
    assert fourth["severity"] == "major"
    ack = await customer.expect("message", ticket=fourth["id"], where=lambda m: m["author"]["kind"] == "system")
    assert "traktujemy na razie jako" in ack["body"]
    seen = (await agent.request({"type": "follow", "ticket": fourth["id"]}, "ticket"))["ticket"]
    assert seen["shop_record"] == {"claims": 3, "downgraded": 3, "penalized": True}
    assert seen["claimed_severity"] == "critical" and seen["deprioritized"] is True
    confirmed = await agent.request({"type": "update_ticket", "ticket": fourth["id"], "severity": "critical"},
                                    "ticket")
    assert confirmed["ticket"]["severity"] == "critical" and confirmed["ticket"]["deprioritized"] is False
    # A question is a question: never lowered, and another shop is untouched.
    question = (await customer.request({"type": "open_ticket", "title": "Pytanie", "body": "Jak?",
                                        "severity": "question", "client_id": str(uuid.uuid4())}, "ticket"))["ticket"]
    assert question["severity"] == "question"
    other, _ = await join(server, clients, tokens.customer(unique("shop")))
    fine = (await other.request({"type": "open_ticket", "title": "Awaria", "body": "Stoi",
                                 "severity": "critical", "client_id": str(uuid.uuid4())}, "ticket"))["ticket"]
    assert fine["severity"] == "critical"
