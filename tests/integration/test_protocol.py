"""The protocol core against a real server process, real Redis, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import msgpack
import pytest
from websockets.exceptions import InvalidStatus

from tests.conftest import Tokens, unique
from tests.servers import ServerProcess
from tests.wsclient import Client


@pytest.fixture(scope="module", params=["redis", "embedded"])
def server(request, server_env):
    """The whole protocol suite on real Redis, and on the embedded in-process stand-in
    (the README's first command), whose Lua scripts must behave exactly like Redis's."""
    env = dict(server_env) if request.param == "redis" else {**server_env, "REDIS_URL": "memory://"}
    proc = ServerProcess(env, log_path=Path(server_env["POMOC_TMP"]) / f"server-{request.param}.log").start()
    yield proc
    proc.stop()


async def connect(server: ServerProcess, clients: list, **kw: object) -> Client:
    client = await Client.connect(server.url, **kw)  # type: ignore[arg-type]
    clients.append(client)
    return client


async def open_ticket(client: Client, title: str = "Płatności nie działają", **extra: object) -> dict:
    reply = await client.request({"type": "open_ticket", "title": title, "body": "Klienci nie mogą zapłacić.",
                                  "severity": "major", "client_id": str(uuid.uuid4()), **extra}, "ticket")
    assert reply["type"] == "ticket", reply
    return reply["ticket"]


async def agent_following(server: ServerProcess, clients: list, tokens: Tokens, ticket_id: int,
                          **hello: object) -> Client:
    agent = await connect(server, clients)
    await agent.hello(tokens.agent(unique("agent")), **hello)
    followed = await agent.request({"type": "follow", "ticket": ticket_id}, "ticket")
    assert followed["type"] == "ticket" and followed["ticket"]["id"] == ticket_id
    return agent


# ------------------------------------------------------------------ handshake
async def test_welcome_describes_the_principal_and_its_shop(server, clients, tokens, shop):
    customer = await connect(server, clients)
    welcome = await customer.hello(tokens.customer(shop, sub="u1", name="Ola"))
    assert welcome["principal"] == {"role": "customer", "id": "u1", "name": "Ola", "shop": shop}
    assert welcome["tickets"] == [] and welcome["unread"] == {} and welcome["badge"] is False
    assert welcome["resume_incomplete"] == []
    assert set(welcome["service"]) >= {"open", "next_open"}
    assert isinstance(welcome["agents_online"], int)


@pytest.mark.parametrize("make_token,why", [
    (lambda t, s: "not-a-jwt", "garbage"),
    (lambda t, s: t.expired(s), "expired"),
    (lambda t, s: t.customer(s)[:-4] + "AAAA", "bad signature"),
    (lambda t, s: __import__("jwt").encode({"sub": "x", "role": "customer", "shop": s, "exp": 4102444800},
                                           "another-secret-another-secret-another-secret", algorithm="HS256"),
     "wrong secret"),
    (lambda t, s: __import__("jwt").encode({"sub": "x", "role": "boss", "exp": 4102444800},
                                           __import__("tests.services").services.SECRET, algorithm="HS256"),
     "unknown role"),
    (lambda t, s: __import__("jwt").encode({"sub": "x", "role": "customer", "exp": 4102444800},
                                           __import__("tests.services").services.SECRET, algorithm="HS256"),
     "customer without shop"),
    (lambda t, s: __import__("jwt").encode({"sub": "x", "role": "agent", "exp": 4102444800},
                                           __import__("tests.services").services.SECRET, algorithm="HS256"),
     "agent without name"),
    (lambda t, s: __import__("jwt").encode({"sub": "x", "role": "agent", "name": "A"},
                                           __import__("tests.services").services.SECRET, algorithm="HS256"),
     "no exp"),
    (lambda t, s: None, "no token"),
])
async def test_a_bad_token_closes_with_4401(server, clients, tokens, shop, make_token, why):
    client = await connect(server, clients)
    await client.send({"type": "hello", "token": make_token(tokens, shop), "ref": 1})
    error = await client.expect("error")
    assert error["code"] == "unauthorized" and error["ref"] == 1, why
    assert await client.wait_closed() == 4401


async def test_no_hello_in_time_closes_with_4408(server, clients):
    client = await connect(server, clients)
    assert await client.wait_closed(timeout=10) == 4408


async def test_frames_before_hello_are_refused_but_hello_still_works(server, clients, tokens, shop):
    client = await connect(server, clients)
    await client.send({"type": "ping", "ref": "early"})
    error = await client.expect("error")
    assert error["code"] == "unauthorized" and error["ref"] == "early"
    await client.hello(tokens.customer(shop))
    assert (await client.request({"type": "ping"}, "pong"))["type"] == "pong"


async def test_origin_is_checked_before_the_upgrade(server, clients, tokens, shop):
    with pytest.raises(InvalidStatus) as refused:
        await Client.connect(server.url, origin="https://evil.example")
    assert refused.value.response.status_code == 403
    allowed = await connect(server, clients, origin="https://shop.example")
    await allowed.hello(tokens.customer(shop))
    bot = await connect(server, clients)  # no Origin: a bot, still needs a token
    await bot.hello(tokens.customer(shop))


async def test_no_subprotocol_means_json(server, clients, tokens, shop):
    client = await connect(server, clients, subprotocols=[])
    assert client.ws.subprotocol is None
    await client.hello(tokens.customer(shop))


# ------------------------------------------------------------- the chat itself
async def test_customer_and_agent_chat_and_every_tab_follows(server, clients, tokens, shop):
    customer = await connect(server, clients)
    await customer.hello(tokens.customer(shop, sub="owner"))
    second_tab = await connect(server, clients)
    await second_tab.hello(tokens.customer(shop, sub="owner"))
    ticket = await open_ticket(customer)
    first = await customer.expect("message", ticket=ticket["id"], seq=1)
    assert first["author"]["kind"] == "customer" and first["body"] == "Klienci nie mogą zapłacić."
    assert (await second_tab.expect("ticket"))["ticket"]["id"] == ticket["id"]
    assert (await second_tab.expect("message", ticket=ticket["id"], seq=1))["id"] == first["id"]

    agent = await agent_following(server, clients, tokens, ticket["id"])
    ack = await agent.request({"type": "send", "ticket": ticket["id"], "body": "Sprawdzamy.", "client_id": "a1"},
                              "ack")
    assert ack["type"] == "ack" and ack["client_id"] == "a1" and ack["ticket"] == ticket["id"]
    for tab in (customer, second_tab):
        got = await tab.expect("message", ticket=ticket["id"], seq=ack["seq"])
        assert got["body"] == "Sprawdzamy." and got["author"] == {"kind": "agent", "id": got["author"]["id"],
                                                                   "name": "Agnieszka"}
    reply = await customer.request({"type": "send", "ticket": ticket["id"], "body": "Dzięki", "client_id": "c1"},
                                   "ack")
    assert (await agent.expect("message", seq=reply["seq"]))["body"] == "Dzięki"
    assert (await second_tab.expect("message", seq=reply["seq"]))["client_id"] == "c1"
    await customer.request({"type": "ping"}, "pong")
    assert not [m for m in customer.pending("message") if m["client_id"] == "c1"], "the sender gets an ack, not a copy"


async def test_msgpack_connections_speak_with_json_ones(server, clients, tokens, shop):
    customer = await connect(server, clients, msgpack_codec=True)
    assert customer.ws.subprotocol == "pomoc.v1.msgpack"
    await customer.hello(tokens.customer(shop))
    ticket = await open_ticket(customer, "Zwroty")
    agent = await agent_following(server, clients, tokens, ticket["id"])
    ack = await agent.request({"type": "send", "ticket": ticket["id"], "body": "Zażółć gęślą jaźń 🙂"}, "ack")
    got = await customer.expect("message", seq=ack["seq"])
    assert got["body"] == "Zażółć gęślą jaźń 🙂"


async def test_resume_replays_exactly_what_was_missed_in_order_once(server, clients, tokens, shop):
    customer = await connect(server, clients)
    customer_token = tokens.customer(shop)
    await customer.hello(customer_token)
    ticket = await open_ticket(customer)
    last_seen = ticket["last_seq"]
    await customer.close()
    agent = await agent_following(server, clients, tokens, ticket["id"])
    sent = []
    for i in range(3):
        ack = await agent.request({"type": "send", "ticket": ticket["id"], "body": f"odpowiedź {i}",
                                   "client_id": f"x{i}"}, "ack")
        sent.append(ack["seq"])
    back = await connect(server, clients)
    welcome = await back.hello(customer_token, resume={str(ticket["id"]): last_seen})
    assert welcome["unread"] == {str(ticket["id"]): 3} and welcome["badge"] is True
    replayed = [await back.expect("message", ticket=ticket["id"]) for _ in sent]
    assert [m["seq"] for m in replayed] == sent
    assert [m["body"] for m in replayed] == ["odpowiedź 0", "odpowiedź 1", "odpowiedź 2"]
    # Live traffic continues right after the replay, with nothing repeated.
    ack = await agent.request({"type": "send", "ticket": ticket["id"], "body": "i jeszcze"}, "ack")
    assert (await back.expect("message", ticket=ticket["id"]))["seq"] == ack["seq"]
    await back.request({"type": "ping"}, "pong")
    assert not back.pending("message")


async def test_a_shops_users_resuming_at_once_each_get_exactly_their_own_window(server, clients, tokens, shop):
    """A storm in one shop: its users' hellos (and their reads) go together, each with
    its own resume point in the same two threads; every one gets what it missed, once, in order."""
    opener = await connect(server, clients)
    await opener.hello(tokens.customer(shop))
    first, second = await open_ticket(opener, "Płatności"), await open_ticket(opener, "Wysyłka")
    agent = await agent_following(server, clients, tokens, first["id"])
    await agent.request({"type": "follow", "ticket": second["id"]}, "ticket")
    seqs: dict[int, list[int]] = {first["id"]: [first["last_seq"]], second["id"]: [second["last_seq"]]}
    for i in range(6):
        for t in (first["id"], second["id"]):
            ack = await agent.request({"type": "send", "ticket": t, "body": f"{t}: {i}"}, "ack")
            seqs[t].append(ack["seq"])
    users = [f"user-{n}" for n in range(12)]
    backs = [await connect(server, clients) for _ in users]
    # User n last saw the n-th message of the first thread and the (11 - n)-th of the second (clamped).
    points = [{first["id"]: seqs[first["id"]][min(n, 6)], second["id"]: seqs[second["id"]][min(11 - n, 6)]}
              for n in range(len(users))]
    welcomes = await asyncio.gather(*(
        back.hello(tokens.customer(shop, user), resume={str(t): s for t, s in point.items()})
        for back, user, point in zip(backs, users, points, strict=True)))
    for back, point, welcome in zip(backs, points, welcomes, strict=True):
        assert {t["id"] for t in welcome["tickets"]} >= {first["id"], second["id"]}
        for t, seen in point.items():
            missed = [s for s in seqs[t] if s > seen]
            got = [await back.expect("message", ticket=t) for _ in missed]
            assert [m["seq"] for m in got] == missed
        await back.request({"type": "ping"}, "pong")
        assert not back.pending("message")


async def test_resume_with_a_future_seq_does_not_swallow_new_messages(server, clients, tokens, shop):
    customer = await connect(server, clients)
    token = tokens.customer(shop)
    await customer.hello(token)
    ticket = await open_ticket(customer)
    await customer.close()
    back = await connect(server, clients)
    await back.hello(token, resume={str(ticket["id"]): 10_000})
    agent = await agent_following(server, clients, tokens, ticket["id"])
    ack = await agent.request({"type": "send", "ticket": ticket["id"], "body": "hej"}, "ack")
    assert (await back.expect("message", ticket=ticket["id"]))["seq"] == ack["seq"]


async def test_resume_announces_more_than_a_thousand_missed(server, clients, tokens, shop):
    customer = await connect(server, clients)
    token = tokens.customer(shop)
    await customer.hello(token)
    ticket = await open_ticket(customer)
    start = ticket["last_seq"]
    await customer.close()
    agent = await connect(server, clients)
    await agent.hello(tokens.agent(unique("a")), feed=False)
    for i in range(1005):
        await agent.send({"type": "send", "ticket": ticket["id"], "body": f"m{i}", "client_id": f"bulk{i}"})
    last = await agent.expect("ack", client_id="bulk1004", timeout=60)
    back = await connect(server, clients)
    welcome = await back.hello(token, resume={str(ticket["id"]): start})
    assert welcome["resume_incomplete"] == [ticket["id"]]
    replayed = [await back.expect("message", ticket=ticket["id"]) for _ in range(1000)]
    seqs = [m["seq"] for m in replayed]
    assert seqs == list(range(last["seq"] - 999, last["seq"] + 1)), "the newest 1000, oldest first"
    older = await back.request({"type": "history", "ticket": ticket["id"], "before_seq": seqs[0], "limit": 200},
                               "history")
    assert [m["seq"] for m in older["messages"]] == list(range(max(1, seqs[0] - 200), seqs[0]))


async def test_a_repeated_client_id_is_stored_once_and_acked_with_the_same_seq(server, clients, tokens, shop):
    customer = await connect(server, clients)
    await customer.hello(tokens.customer(shop))
    ticket = await open_ticket(customer)
    agent = await agent_following(server, clients, tokens, ticket["id"])
    frame = {"type": "send", "ticket": ticket["id"], "body": "raz", "client_id": "same-id"}
    first = await customer.request(frame, "ack")
    again = await customer.request(frame, "ack")
    assert first["seq"] == again["seq"]
    await agent.expect("message", seq=first["seq"])
    history = await customer.request({"type": "history", "ticket": ticket["id"]}, "history")
    assert [m["client_id"] for m in history["messages"]].count("same-id") == 1
    await agent.request({"type": "ping"}, "pong")
    assert not agent.pending("message"), "a retried send is not delivered twice"
    # The same client id from another author is another message.
    other = await agent.request(frame, "ack")
    assert other["seq"] == first["seq"] + 1


async def test_open_ticket_is_idempotent_on_client_id(server, clients, tokens, shop):
    customer = await connect(server, clients)
    await customer.hello(tokens.customer(shop))
    frame = {"type": "open_ticket", "title": "Faktury", "body": "Brak faktury", "severity": "question",
             "client_id": "open-once"}
    first = await customer.request(frame, "ticket")
    again = await customer.request(frame, "ticket")
    assert first["ticket"]["id"] == again["ticket"]["id"]
    listed = await customer.request({"type": "list_tickets"}, "tickets")
    assert [t["id"] for t in listed["tickets"]] == [first["ticket"]["id"]]


async def test_history_pages_backwards_and_forwards(server, clients, tokens, shop):
    customer = await connect(server, clients)
    await customer.hello(tokens.customer(shop))
    ticket = await open_ticket(customer)
    for i in range(10):
        await customer.request({"type": "send", "ticket": ticket["id"], "body": f"m{i}"}, "ack")
    last = ticket["last_seq"] + 10
    page = await customer.request({"type": "history", "ticket": ticket["id"], "limit": 4}, "history")
    assert [m["seq"] for m in page["messages"]] == list(range(last - 3, last + 1)) and page["more"] is True
    assert all("type" not in m for m in page["messages"])
    older = await customer.request({"type": "history", "ticket": ticket["id"], "before_seq": last - 3,
                                    "limit": 200}, "history")
    assert [m["seq"] for m in older["messages"]] == list(range(1, last - 3)) and older["more"] is False
    newer = await customer.request({"type": "history", "ticket": ticket["id"], "after_seq": last - 2,
                                    "limit": 1}, "history")
    assert [m["seq"] for m in newer["messages"]] == [last - 1] and newer["more"] is True


async def test_read_cursors_drive_unread_and_badge(server, clients, tokens, shop):
    token = tokens.customer(shop)
    customer = await connect(server, clients)
    await customer.hello(token)
    ticket = await open_ticket(customer)
    agent = await agent_following(server, clients, tokens, ticket["id"])
    acks = [await agent.request({"type": "send", "ticket": ticket["id"], "body": f"a{i}"}, "ack") for i in range(2)]
    await customer.expect("message", seq=acks[-1]["seq"])
    second = await connect(server, clients)
    welcome = await second.hello(token)
    assert welcome["unread"] == {str(ticket["id"]): 2} and welcome["badge"] is True
    assert [t["unread"] for t in welcome["tickets"] if t["id"] == ticket["id"]] == [2]
    await customer.send({"type": "read", "ticket": ticket["id"], "seq": acks[0]["seq"]})
    for tab in (customer, second):
        unread = await tab.expect("unread", where=lambda f: f["tickets"].get(str(ticket["id"])) == 1)
        assert unread["badge"] is True
    await customer.send({"type": "read", "ticket": ticket["id"], "seq": acks[1]["seq"]})
    for tab in (customer, second):
        unread = await tab.expect("unread", where=lambda f: f["tickets"].get(str(ticket["id"])) == 0)
        assert unread["badge"] is False
    # Reading backwards never un-reads; a colleague in the same shop has their own state.
    await customer.send({"type": "read", "ticket": ticket["id"], "seq": 1})
    await customer.expect("unread", where=lambda f: f["tickets"].get(str(ticket["id"])) == 0)
    colleague = await connect(server, clients)
    welcome = await colleague.hello(tokens.customer(shop, sub="colleague"))
    assert welcome["unread"][str(ticket["id"])] >= 2


async def test_another_shop_is_forbidden_for_every_frame_naming_a_ticket(server, clients, tokens, shop):
    owner = await connect(server, clients)
    await owner.hello(tokens.customer(shop))
    ticket = await open_ticket(owner)
    stranger = await connect(server, clients)
    await stranger.hello(tokens.customer(unique("other-shop")))
    tid = ticket["id"]
    for frame in ({"type": "send", "ticket": tid, "body": "x"}, {"type": "read", "ticket": tid, "seq": 1},
                  {"type": "typing", "ticket": tid}, {"type": "history", "ticket": tid},
                  {"type": "follow", "ticket": tid}, {"type": "update_ticket", "ticket": tid, "status": "resolved"}):
        reply = await stranger.request(frame, "never")
        assert (reply["type"], reply["code"]) == ("error", "forbidden"), frame
    welcome = await (await connect(server, clients)).hello(tokens.customer(unique("x")), resume={str(tid): 0})
    assert welcome["tickets"] == []
    history = await owner.request({"type": "history", "ticket": tid}, "history")
    assert all(m["body"] != "x" for m in history["messages"])


async def test_a_ticket_that_does_not_exist_is_not_found(server, clients, tokens, shop):
    agent = await connect(server, clients)
    await agent.hello(tokens.agent(unique("a")))
    for frame in ({"type": "send", "ticket": 987654321, "body": "x"}, {"type": "follow", "ticket": 987654321},
                  {"type": "history", "ticket": 987654321}, {"type": "read", "ticket": 987654321, "seq": 1}):
        reply = await agent.request(frame, "never")
        assert reply["code"] == "not_found", frame


async def test_agents_get_their_inbox_feed_unless_they_opt_out(server, clients, tokens, shop):
    agent = await connect(server, clients)
    await agent.hello(tokens.agent(unique("a")))
    bot = await connect(server, clients)
    await bot.hello(tokens.agent(unique("bot")), feed=False)
    customer = await connect(server, clients)
    await customer.hello(tokens.customer(shop))
    ticket = await open_ticket(customer)
    seen = await agent.expect("ticket", where=lambda f: f["ticket"]["id"] == ticket["id"])
    assert seen["ticket"]["shop"] == shop and seen["ticket"]["shop_name"] == f"Sklep {shop}"
    await bot.request({"type": "ping"}, "pong")
    assert not [f for f in bot.pending("ticket") if f["ticket"]["id"] == ticket["id"]]
    # An agent that did not follow gets no messages of the ticket.
    await customer.request({"type": "send", "ticket": ticket["id"], "body": "hop"}, "ack")
    await agent.request({"type": "ping"}, "pong")
    assert not [f for f in agent.pending("message") if f["ticket"] == ticket["id"]]


async def test_statuses_and_the_read_only_closed_ticket(server, clients, tokens, shop):
    customer = await connect(server, clients)
    await customer.hello(tokens.customer(shop))
    ticket = await open_ticket(customer)
    refused = await customer.request({"type": "update_ticket", "ticket": ticket["id"], "status": "closed"}, "ticket")
    assert refused["code"] == "forbidden"
    resolved = await customer.request({"type": "update_ticket", "ticket": ticket["id"], "status": "resolved"},
                                      "ticket")
    assert resolved["ticket"]["status"] == "resolved"
    note = await customer.expect("message", where=lambda f: f["author"]["kind"] == "system"
                                 and "rozwiązane" in f["body"])
    assert note["ticket"] == ticket["id"]
    agent = await agent_following(server, clients, tokens, ticket["id"])
    closed = await agent.request({"type": "update_ticket", "ticket": ticket["id"], "status": "closed"}, "ticket")
    assert closed["ticket"]["status"] == "closed" and closed["ticket"]["closed_at"]
    assert (await customer.expect("ticket", where=lambda f: f["ticket"]["status"] == "closed"))
    for who in (customer, agent):
        refused = await who.request({"type": "send", "ticket": ticket["id"], "body": "jeszcze"}, "ack")
        assert refused["code"] == "closed_ticket" and "new ticket" in refused["message"]
    reopen = await agent.request({"type": "update_ticket", "ticket": ticket["id"], "status": "open"}, "ticket")
    assert reopen["code"] == "closed_ticket"


# ----------------------------------------------------------------- bad input
BAD_FRAMES = [
    ("{not json", "bad_request"),
    ("[1, 2, 3]", "bad_request"),
    ('"just a string"', "bad_request"),
    ("42", "bad_request"),
    ('{"no": "type"}', "bad_request"),
    ('{"type": 7}', "bad_request"),
    ('{"type": "explode"}', "bad_request"),
    ('{"type": "send"}', "bad_request"),
    ('{"type": "send", "ticket": "abc", "body": "x"}', "bad_request"),
    ('{"type": "send", "ticket": true, "body": "x"}', "bad_request"),
    ('{"type": "send", "ticket": -1, "body": "x"}', "bad_request"),
    ('{"type": "send", "ticket": 1e400, "body": "x"}', "bad_request"),
    ('{"type": "send", "ticket": 1, "body": ["x"]}', "bad_request"),
    ('{"type": "send", "ticket": 1, "body": "   "}', "bad_request"),
    ('{"type": "send", "ticket": 1, "body": "x", "client_id": {"a": 1}}', "bad_request"),
    ('{"type": "read", "ticket": 1}', "bad_request"),
    ('{"type": "read", "ticket": 1, "seq": "9"}', "bad_request"),
    ('{"type": "history", "ticket": 1, "limit": 100000}', "bad_request"),
    ('{"type": "history", "ticket": 1, "before_seq": 5, "after_seq": 2}', "bad_request"),
    ('{"type": "open_ticket", "title": "", "body": "x"}', "bad_request"),
    ('{"type": "open_ticket", "title": "t", "body": "x", "severity": "apocalyptic"}', "bad_request"),
    ('{"type": "open_ticket", "title": "t", "body": "x", "context": "chrome"}', "bad_request"),
    ('{"type": "update_ticket", "ticket": 1}', "bad_request"),
    ('{"type": "update_ticket", "ticket": 1, "status": "deleted"}', "bad_request"),
    ('{"type": "list_tickets", "status": 5}', "bad_request"),
    ('{"type": "presence", "status": "asleep"}', "bad_request"),
    ('{"type": "hello", "token": "again"}', "bad_request"),
    ('{"type": "send", "ticket": 1, "body": "' + "x" * 10_001 + '"}', "too_large"),
    ('{"type": "open_ticket", "title": "' + "t" * 201 + '", "body": "x"}', "too_large"),
]


@pytest.mark.parametrize("raw,code", BAD_FRAMES, ids=[f"{i}-{c}" for i, (_, c) in enumerate(BAD_FRAMES)])
async def test_bad_frames_get_an_error_and_the_connection_stays(server, clients, tokens, shop, raw, code):
    client = await connect(server, clients)
    await client.hello(tokens.customer(shop))
    await client.send(raw)
    error = await client.expect("error")
    assert error["code"] == code, error
    assert (await client.request({"type": "ping"}, "pong"))["type"] == "pong"


async def test_errors_carry_the_ref_of_the_request(server, clients, tokens, shop):
    client = await connect(server, clients)
    await client.hello(tokens.customer(shop))
    await client.send({"type": "send", "ticket": "nope", "body": "x", "ref": "r-17"})
    assert (await client.expect("error"))["ref"] == "r-17"


async def test_msgpack_garbage_is_a_bad_request(server, clients, tokens, shop):
    client = await connect(server, clients, msgpack_codec=True)
    await client.hello(tokens.customer(shop))
    for raw in (b"\xc1", b"\x93\x01", msgpack.packb([1, 2]), msgpack.packb({"type": "nope"}), b"\xdd\xff\xff\xff\xff",
                "text on a msgpack connection"):
        await client.send(raw)
        assert (await client.expect("error"))["code"] == "bad_request", raw
    assert (await client.request({"type": "ping"}, "pong"))["type"] == "pong"


async def test_a_thousand_garbage_frames_later_ping_still_answers(server, clients, tokens, shop):
    client = await connect(server, clients)
    await client.hello(tokens.customer(shop))
    garbage = ["{bad", "[]", '{"type":"nope"}', '{"type":"send"}', '"x"', "\x00\x01", "{}" * 100, "null"]
    for i in range(1000):
        await client.send(garbage[i % len(garbage)])
    pong = await client.request({"type": "ping"}, "pong", timeout=30)
    assert pong["type"] == "pong"
    assert len(client.pending("error")) == 1000


async def test_a_frame_over_64_kib_closes_with_1009(server, clients, tokens, shop):
    client = await connect(server, clients)
    await client.hello(tokens.customer(shop))
    await client.send(json.dumps({"type": "send", "ticket": 1, "body": "x" * (70 * 1024)}))
    assert await client.wait_closed() == 1009
    other = await connect(server, clients)
    await other.hello(tokens.customer(shop))


async def test_many_connections_at_once_all_get_welcome(server, clients, tokens, shop):
    async def one(i: int) -> dict:
        client = await connect(server, clients)
        return await client.hello(tokens.customer(f"{shop}-{i}"))

    welcomes = await asyncio.gather(*(one(i) for i in range(50)))
    assert len({w["conn_id"] for w in welcomes}) == 50


async def test_system_messages_follow_the_customers_language(server, clients, tokens, shop):
    customer = await connect(server, clients)
    await customer.hello(tokens.customer(shop), lang="en")
    ticket = await open_ticket(customer, title="Payments broken")
    description = await customer.expect("message", ticket=ticket["id"])
    ack = await customer.expect("message", ticket=ticket["id"])
    assert description["author"]["kind"] == "customer"
    assert ack["body"].startswith("Thank you, we have received your ticket (severity: major).")
    agent = await agent_following(server, clients, tokens, ticket["id"])
    await agent.request({"type": "update_ticket", "ticket": ticket["id"], "status": "waiting_on_customer"},
                        "ticket")
    note = await customer.expect("message", where=lambda m: m["author"]["kind"] == "system"
                                 and "status" in m["body"])
    assert note["body"].endswith("status open → waiting for the customer.")
    await customer.request({"type": "send", "ticket": ticket["id"], "body": "Still broken"}, "ack")
    back = await customer.expect("message", where=lambda m: m["author"]["kind"] == "system"
                                 and "customer replied" in m["body"])
    assert back["body"] == "The customer replied — the ticket is back with support."
    # A Polish colleague's hello does not change the ticket's language; the token's claim is the default.
    polish = await connect(server, clients)
    welcome = await polish.hello(tokens.customer(shop, sub="clerk"))
    assert ticket["id"] in [t["id"] for t in welcome["tickets"]]
    bad = await connect(server, clients)
    refused = await bad.request({"type": "hello", "token": tokens.customer(shop), "lang": "de"}, "welcome")
    assert refused["type"] == "error" and refused["code"] == "bad_request"


async def test_pomocs_own_system_messages_are_not_unread_for_agents(server, clients, tokens, shop):
    customer = await connect(server, clients)
    await customer.hello(tokens.customer(shop))
    ticket = await open_ticket(customer)
    assert ticket["last_seq"] >= 2  # the description, then the acknowledgment (and perhaps a request for facts)
    agent = await connect(server, clients)
    agent_token = tokens.agent(unique("agent"))
    welcome = await agent.hello(agent_token)
    key = str(ticket["id"])
    assert welcome["unread"].get(key) == 1, welcome["unread"]  # only what the customer wrote
    await agent.request({"type": "follow", "ticket": ticket["id"]}, "ticket")
    read = await agent.request({"type": "read", "ticket": ticket["id"], "seq": 1}, "unread")
    assert read["tickets"][key] == 0
    more = await customer.request({"type": "send", "ticket": ticket["id"], "body": "I jeszcze to"}, "ack")
    grown = await agent.expect("unread", where=lambda f: key in f["tickets"])
    assert grown["tickets"][key] == 1 and more["seq"] > ticket["last_seq"]
    again = await connect(server, clients)
    assert (await again.hello(agent_token))["unread"].get(key) == 1
