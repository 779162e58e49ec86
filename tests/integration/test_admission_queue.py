"""The node's admission queue: hellos are worked on a few at a time, in turn, up to their
welcome (`POMOC_HELLO_CONCURRENCY`). Here it is 1 — the tightest queue — on a real
server: a crowd of hellos all get in, and a client that resumes a long replay and then
stops reading holds no place in the queue (the replay streams outside it)."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import socket
import uuid

import pytest
from websockets.asyncio.client import connect

from tests import services
from tests.conftest import unique
from tests.servers import ServerProcess
from tests.wsclient import join


@pytest.fixture(scope="module")
def queued(server_env, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("queue")
    env = {**server_env, "POMOC_HELLO_CONCURRENCY": "1", "POMOC_CLOSE_GRACE": "300",
           "POMOC_REDIS_PREFIX": f"{services.REDIS_PREFIX}{uuid.uuid4().hex[:6]}:"}
    node = ServerProcess(env, log_path=tmp / "queue.log").start()
    yield node
    node.stop(signal.SIGKILL)


async def test_a_crowd_of_hellos_all_get_in_one_at_a_time(queued, clients, tokens):
    shops = [unique("shop") for _ in range(40)]
    joined = await asyncio.gather(*(join(queued, clients, tokens.customer(s)) for s in shops))
    assert [w["type"] for _, w in joined] == ["welcome"] * len(shops)
    for client, _ in joined:
        assert (await client.request({"type": "ping"}, "pong"))["type"] == "pong"


async def test_a_resume_that_stops_reading_its_replay_holds_no_place_in_the_queue(queued, clients, tokens, shop):
    customer, _ = await join(queued, clients, tokens.customer(shop))
    ticket = (await customer.request({"type": "open_ticket", "title": "Długa rozmowa", "body": "?",
                                      "client_id": "o"}, "ticket"))["ticket"]
    agent, _ = await join(queued, clients, tokens.agent(unique("a")), feed=False)
    await agent.request({"type": "follow", "ticket": ticket["id"]}, "ticket")
    count = 300  # about 2 MB of replay: far more than the socket buffers on both sides hold
    for i in range(count):
        await agent.send({"type": "send", "ticket": ticket["id"], "body": secrets.token_urlsafe(6700),
                          "client_id": f"r{i}"})
    await agent.expect("ack", client_id=f"r{count - 1}", timeout=120)

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", queued.port))
    slow = await connect(queued.url, sock=sock, subprotocols=["pomoc.v1.json"], max_queue=1, max_size=None)
    try:
        await slow.send(json.dumps({"type": "hello", "token": tokens.customer(shop, "reader"),
                                    "resume": {str(ticket["id"]): 0}}))
        first = json.loads(await asyncio.wait_for(slow.recv(), 30))
        assert first["type"] == "welcome"  # then it reads no more: its replay is stuck on the socket
        # With one place in the queue, the next hellos get theirs while that replay waits.
        for n in range(3):
            other, welcome = await join(queued, clients, tokens.customer(unique("shop"), f"next-{n}"))
            assert welcome["type"] == "welcome"
        assert slow.close_code is None  # still there, still stuck: it never held the queue
    finally:
        await slow.close()
