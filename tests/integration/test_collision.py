"""Collision between agents, on two real nodes sharing Redis (and the embedded
stand-in): who has a ticket open, teammates' typing, and a send refused as stale
when another agent replied since the console last showed the thread."""

from __future__ import annotations

import signal
import time

from tests.conftest import unique
from tests.integration import test_realtime
from tests.integration.test_realtime import separate_nodes
from tests.wsclient import join

# The realtime suite's nodes: two sharing real Redis, or one embedded node as both.
pair = test_realtime.pair


async def _ticket(node, clients, tokens, shop):
    customer, _ = await join(node, clients, tokens.customer(shop))
    ticket = (await customer.request({"type": "open_ticket", "title": "Płatności", "body": "Nie działa",
                                      "client_id": "o1"}, "ticket"))["ticket"]
    return customer, ticket


def _ids(frame):
    return [agent["id"] for agent in frame["agents"]]


async def test_agents_see_who_has_the_ticket_open_until_they_leave_or_disconnect(pair, clients, tokens, shop):
    a, b = pair
    customer, ticket = await _ticket(a, clients, tokens, shop)
    anna, bartek = unique("anna"), unique("bartek")
    console_b, _ = await join(b, clients, tokens.agent(bartek, name="Bartek"))
    await console_b.request({"type": "follow", "ticket": ticket["id"]}, "ticket")
    alone = await console_b.expect("viewers", ticket=ticket["id"])
    assert alone["agents"] == [{"id": bartek, "name": "Bartek"}]

    console_a, _ = await join(a, clients, tokens.agent(anna, name="Anna"))
    await console_a.request({"type": "follow", "ticket": ticket["id"]}, "ticket")
    # The newcomer hears who is there; the one already there hears of the newcomer.
    assert sorted(_ids(await console_a.expect("viewers", ticket=ticket["id"]))) == sorted([anna, bartek])
    seen = await console_b.expect("viewers", ticket=ticket["id"], where=lambda f: anna in _ids(f))
    assert {"id": anna, "name": "Anna"} in seen["agents"]

    # A second tab of Anna's is still one Anna; its unfollow does not make her leave.
    tab_a, _ = await join(b, clients, tokens.agent(anna, name="Anna"))
    await tab_a.request({"type": "follow", "ticket": ticket["id"]}, "ticket")
    await tab_a.request({"type": "unfollow", "ticket": ticket["id"]}, "unfollowed")
    await console_b.request({"type": "ping"}, "pong")

    left = await console_a.request({"type": "unfollow", "ticket": ticket["id"]}, "unfollowed")
    assert left["ticket"] == ticket["id"]
    await console_b.expect("viewers", ticket=ticket["id"], where=lambda f: _ids(f) == [bartek])
    assert not [f for f in console_b.pending("viewers") if anna in _ids(f)], "the second tab changed nothing"

    await console_a.request({"type": "follow", "ticket": ticket["id"]}, "ticket")
    await console_b.expect("viewers", ticket=ticket["id"], where=lambda f: anna in _ids(f))
    await console_a.close()
    await console_b.expect("viewers", ticket=ticket["id"], where=lambda f: _ids(f) == [bartek])

    # After unfollowing, the ticket's messages stop reaching that connection.
    await tab_a.request({"type": "ping"}, "pong")
    await customer.request({"type": "send", "ticket": ticket["id"], "body": "Halo?"}, "ack")
    await console_b.expect("message", ticket=ticket["id"], body="Halo?")
    await tab_a.request({"type": "ping"}, "pong")
    assert not [f for f in tab_a.pending("message") if f["ticket"] == ticket["id"]]
    # Customers never hear who on the team looks at their ticket.
    await customer.request({"type": "ping"}, "pong")
    assert customer.pending("viewers") == []


async def test_a_bot_following_a_ticket_is_no_viewer(pair, clients, tokens, shop):
    a, b = pair
    _customer, ticket = await _ticket(a, clients, tokens, shop)
    console, _ = await join(b, clients, tokens.agent(unique("anna"), name="Anna"))
    await console.request({"type": "follow", "ticket": ticket["id"]}, "ticket")
    await console.expect("viewers", ticket=ticket["id"])
    bot, _ = await join(a, clients, tokens.agent(unique("bot"), name="Bot"), feed=False)
    await bot.request({"type": "follow", "ticket": ticket["id"]}, "ticket")
    await bot.request({"type": "ping"}, "pong")
    await console.request({"type": "ping"}, "pong")
    assert console.pending("viewers") == [] and bot.pending("viewers") == []


async def test_a_killed_node_s_viewers_expire(pair, clients, tokens, shop):
    a, b = pair
    separate_nodes(a, b)
    _customer, ticket = await _ticket(b, clients, tokens, shop)
    anna, bartek = unique("anna"), unique("bartek")
    console_b, _ = await join(b, clients, tokens.agent(bartek, name="Bartek"))
    await console_b.request({"type": "follow", "ticket": ticket["id"]}, "ticket")
    console_a, _ = await join(a, clients, tokens.agent(anna, name="Anna"))
    await console_a.request({"type": "follow", "ticket": ticket["id"]}, "ticket")
    await console_b.expect("viewers", ticket=ticket["id"], where=lambda f: anna in _ids(f))
    started = time.monotonic()
    a.stop(signal.SIGKILL)
    await console_b.expect("viewers", ticket=ticket["id"], where=lambda f: _ids(f) == [bartek], timeout=45)
    assert time.monotonic() - started < 45


async def test_teammates_typing_reaches_the_other_agents(pair, clients, tokens, shop):
    a, b = pair
    customer, ticket = await _ticket(a, clients, tokens, shop)
    anna = unique("anna")
    console_a, _ = await join(a, clients, tokens.agent(anna, name="Anna"))
    other_tab_a, _ = await join(b, clients, tokens.agent(anna, name="Anna"))
    console_b, _ = await join(b, clients, tokens.agent(unique("bartek"), name="Bartek"))
    for console in (console_a, other_tab_a, console_b):
        await console.request({"type": "follow", "ticket": ticket["id"]}, "ticket")
    await console_a.send({"type": "typing", "ticket": ticket["id"]})
    got = await console_b.expect("typing", ticket=ticket["id"])
    assert got["who"] == {"kind": "agent", "id": anna, "name": "Anna"}
    assert (await customer.expect("typing", ticket=ticket["id"]))["who"]["id"] == anna
    await other_tab_a.request({"type": "ping"}, "pong")
    assert other_tab_a.pending("typing") == [], "an agent is not told of its own typing"
    await customer.send({"type": "typing", "ticket": ticket["id"]})
    assert (await console_b.expect("typing", ticket=ticket["id"]))["who"]["kind"] == "customer"


async def test_a_send_after_a_teammate_s_unseen_reply_is_refused_unless_forced(pair, clients, tokens, shop):
    a, b = pair
    customer, ticket = await _ticket(a, clients, tokens, shop)
    anna, bartek = unique("anna"), unique("bartek")
    console_a, _ = await join(a, clients, tokens.agent(anna, name="Anna"))
    console_b, _ = await join(b, clients, tokens.agent(bartek, name="Bartek"))
    shown = (await console_a.request({"type": "follow", "ticket": ticket["id"]}, "ticket"))["ticket"]["last_seq"]
    await console_b.request({"type": "follow", "ticket": ticket["id"]}, "ticket")
    # A customer's message since does not make Anna's reply stale, nor does her own.
    await customer.request({"type": "send", "ticket": ticket["id"], "body": "Czekam"}, "ack")
    own = await console_a.request({"type": "send", "ticket": ticket["id"], "body": "Sprawdzam", "client_id": "a1",
                                   "seen_seq": shown}, "ack")
    assert own["type"] == "ack"
    # Nor does a teammate's private note: it answers nobody.
    note = await console_b.request({"type": "send", "ticket": ticket["id"], "body": "Klient VIP", "client_id": "b0",
                                    "internal": True}, "ack")
    assert note["type"] == "ack", note
    again = await console_a.request({"type": "send", "ticket": ticket["id"], "body": "Jeszcze chwila",
                                     "client_id": "a2", "seen_seq": shown}, "ack")
    assert again["type"] == "ack", again
    bart = await console_b.request({"type": "send", "ticket": ticket["id"], "body": "Już naprawione",
                                    "client_id": "b1", "seen_seq": again["seq"]}, "ack")
    assert bart["type"] == "ack", bart
    refused = await console_a.request({"type": "send", "ticket": ticket["id"], "body": "Proszę zrestartować",
                                       "client_id": "a3", "seen_seq": again["seq"]}, "ack")
    assert refused["type"] == "error" and refused["code"] == "stale", refused
    assert refused["ticket"] == ticket["id"] and refused["seqs"] == [bart["seq"]]
    # Nothing was stored: the thread ends with Bartek's reply, and the customer got no copy.
    page = await console_b.request({"type": "history", "ticket": ticket["id"], "after_seq": bart["seq"] - 1},
                                   "history")
    assert [m["body"] for m in page["messages"]] == ["Już naprawione"]
    forced = await console_a.request({"type": "send", "ticket": ticket["id"], "body": "Proszę zrestartować",
                                      "client_id": "a3", "seen_seq": again["seq"], "force": True}, "ack")
    assert forced["type"] == "ack" and forced["seq"] == bart["seq"] + 1
    await customer.expect("message", seq=forced["seq"], body="Proszę zrestartować")
    up_to_date = await console_a.request({"type": "send", "ticket": ticket["id"], "body": "Daj znać",
                                          "seen_seq": forced["seq"]}, "ack")
    assert up_to_date["type"] == "ack"
    # A customer's seen_seq is no check at all.
    plain = await customer.request({"type": "send", "ticket": ticket["id"], "body": "Działa!", "seen_seq": 1}, "ack")
    assert plain["type"] == "ack"


async def test_collision_frames_refuse_bad_input(pair, clients, tokens, shop):
    a, _b = pair
    customer, ticket = await _ticket(a, clients, tokens, shop)
    console, _ = await join(a, clients, tokens.agent(unique("anna"), name="Anna"))
    cases = [
        ({"type": "unfollow"}, "bad_request", "'ticket'"),
        ({"type": "unfollow", "ticket": "abc"}, "bad_request", "'ticket'"),
        ({"type": "unfollow", "ticket": -1}, "bad_request", "'ticket'"),
        ({"type": "send", "ticket": ticket["id"], "body": "x", "seen_seq": "3"}, "bad_request", "'seen_seq'"),
        ({"type": "send", "ticket": ticket["id"], "body": "x", "seen_seq": -1}, "bad_request", "'seen_seq'"),
        ({"type": "send", "ticket": ticket["id"], "body": "x", "seen_seq": 2**31}, "bad_request", "'seen_seq'"),
        ({"type": "send", "ticket": ticket["id"], "body": "x", "force": "yes"}, "bad_request", "'force'"),
    ]
    for frame, code, words in cases:
        answer = await console.request(frame, "never")
        assert answer["type"] == "error" and answer["code"] == code and words in answer["message"], (frame, answer)
    # Unfollowing what is not followed is no error; a customer does not unfollow.
    assert (await console.request({"type": "unfollow", "ticket": 10**12}, "unfollowed"))["type"] == "unfollowed"
    refused = await customer.request({"type": "unfollow", "ticket": ticket["id"]}, "unfollowed")
    assert refused["type"] == "error" and refused["code"] == "forbidden"
    assert (await console.request({"type": "ping"}, "pong"))["type"] == "pong"


async def test_an_agent_lists_one_shop_s_tickets_for_the_context_panel(pair, clients, tokens, shop):
    a, b = pair
    customer, first = await _ticket(a, clients, tokens, shop)
    second = (await customer.request({"type": "open_ticket", "title": "Domena", "body": "?", "client_id": "o2"},
                                     "ticket"))["ticket"]
    _other_shop, foreign = await _ticket(a, clients, tokens, unique("shop"))
    console, _ = await join(b, clients, tokens.agent(unique("anna"), departments=["shipping"]))
    await console.request({"type": "update_ticket", "ticket": first["id"], "status": "resolved"}, "ticket")
    listed = await console.request({"type": "list_tickets", "shop": shop}, "tickets")
    # Every status and department of that shop, newest first; nobody else's.
    assert [t["id"] for t in listed["tickets"]] == [second["id"], first["id"]] and listed["more"] is False
    assert listed["tickets"][1]["status"] == "resolved"
    resolved = await console.request({"type": "list_tickets", "shop": shop, "status": "resolved"}, "tickets")
    assert [t["id"] for t in resolved["tickets"]] == [first["id"]]
    paged = await console.request({"type": "list_tickets", "shop": shop, "limit": 1}, "tickets")
    assert [t["id"] for t in paged["tickets"]] == [second["id"]] and paged["more"] is True
    # A customer's `shop` changes nothing: its own shop's tickets, as always.
    own = await customer.request({"type": "list_tickets", "shop": "someone-else"}, "tickets")
    assert foreign["id"] not in [t["id"] for t in own["tickets"]]
    assert {t["id"] for t in own["tickets"]} == {first["id"], second["id"]}
