"""The connection's protocol state machine, driven by plain frames and events (no socket)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from server.errors import CLOSE_RATE_LIMITED, CLOSE_TRY_AGAIN, NotFound, RateLimited
from server.protocol import frames, views
from server.protocol.codec import MSGPACK
from server.protocol.delivery import Gap
from server.protocol.events import Event, Source
from server.protocol.session import CLOSED, HELLO, OPEN, WELCOMING, Config
from server.rules.records import Author, Message
from tests.fast.pair import AT, Peer, agent, customer, message, message_event

AGENT_AUTHOR = Author("agent", "a1", "Agnieszka")


def frame(kind: str, **fields: object) -> bytes:
    return json.dumps({"type": kind, **fields}).encode()


def opened_customer(**follows: int) -> Peer:
    peer = Peer()
    peer.open_as(customer(), follows={int(t.removeprefix("t")): ("s1", c) for t, c in follows.items()})
    peer.frames()
    return peer


# ------------------------------------------------------------------ hello
def test_only_hello_opens_a_connection() -> None:
    peer = Peer()
    assert peer.session.receive(frame("ping", ref=1), 0.0) is None
    (error,) = peer.frames()
    assert error == {"type": "error", "code": "unauthorized", "message": "say hello with a token first", "ref": 1}
    incoming = peer.session.receive(frame("hello", token="x", ref="h"), 0.0)
    assert incoming is not None and isinstance(incoming.request, frames.Hello) and incoming.ref == "h"
    assert peer.session.state == HELLO


def test_a_second_hello_is_refused_and_the_connection_stays() -> None:
    peer = opened_customer()
    assert peer.session.receive(frame("hello", token="x", ref=2), 0.0) is None
    assert peer.frames()[0]["code"] == "bad_request"
    assert peer.session.state == OPEN and peer.session.close_code is None


def test_a_failed_hello_may_be_said_again() -> None:
    peer = Peer()
    peer.session.receive(frame("hello", token="x"), 0.0)
    peer.session.authenticated(customer(), True)
    peer.session.follow(5, "s1", 3)
    assert peer.session.state == WELCOMING
    peer.session.hello_failed()
    assert peer.session.state == HELLO and peer.session.principal is None and not peer.session.follows
    assert peer.session.receive(frame("hello", token="x"), 0.0) is not None


@pytest.mark.parametrize("data", [b"{", b"[1,2]", frame("nope"), frame("send", ticket="x", body="a"),
                                  frame("history", ticket=1, before_seq=2, after_seq=1),
                                  "\udcff".encode("utf-8", "surrogatepass")])
def test_bad_frames_get_an_error_and_the_connection_stays(data: bytes) -> None:
    peer = opened_customer()
    assert peer.session.receive(data, 0.0) is None
    (error,) = peer.frames()
    assert error["type"] == "error" and error["code"] == "bad_request"
    assert peer.session.close_code is None


def test_a_resume_naming_too_many_tickets_is_refused() -> None:
    peer = Peer()
    resume = {str(i): 0 for i in range(1, 1002)}
    assert peer.session.receive(frame("hello", token="t", resume=resume), 0.0) is None
    assert "1000" in peer.frames()[0]["message"]


# ------------------------------------------------------------ close codes
def test_a_flood_of_bad_frames_closes_with_4429() -> None:
    peer = Peer(config=Config(max_bad_frames=2, bad_frame_window=10.0))
    peer.open_as(customer())
    for i in range(12):  # more than five times the allowance within the window
        peer.session.receive(b"garbage", float(i) / 10)
    assert peer.session.close_code == CLOSE_RATE_LIMITED
    # Bad frames spread beyond the window never add up.
    slow = Peer(config=Config(max_bad_frames=2, bad_frame_window=1.0))
    slow.open_as(customer())
    for i in range(20):
        slow.session.receive(b"garbage", float(i) * 2)
    assert slow.session.close_code is None


def test_hammering_after_rate_limited_closes_with_4429_and_asks_for_a_cool_down() -> None:
    peer = Peer(config=Config(max_rate_limited=3))
    peer.open_as(customer())
    results = [peer.session.fail(RateLimited("slow down", retry_after=1.0), i, float(i)) for i in range(5)]
    assert results == [False, False, False, True, False]
    assert peer.session.close_code == CLOSE_RATE_LIMITED
    errors = [f for f in peer.frames() if f["type"] == "error"]
    assert errors[0]["retry_after"] == 1.0 and len(errors) == 4  # nothing more once closing


def test_the_explanation_goes_out_before_the_close() -> None:
    peer = opened_customer()
    peer.session.fail(NotFound("no such ticket"), "r", 0.0)
    peer.session.close(4401, "bye")
    assert [f["code"] for f in peer.frames()] == ["not_found"]
    assert peer.session.data_to_send() == [] and peer.session.state == CLOSED
    peer.session.reply({"type": "pong"})
    assert peer.session.data_to_send() == []


def test_a_client_that_cannot_keep_up_is_closed_with_1013_and_gets_nothing_more() -> None:
    peer = Peer(config=Config(send_queue_max=10))
    peer.open_as(customer(), follows={1: ("s1", 0)})
    for seq in range(1, 12):
        peer.session.deliver(Source.SHOP, message_event(message(1, seq, author=AGENT_AUTHOR)))
    assert peer.session.close_code == CLOSE_TRY_AGAIN
    assert peer.session.data_to_send() == []  # too slow to take them anyway: it resumes


def test_events_during_the_welcome_wait_and_overflow_closes() -> None:
    peer = Peer(config=Config(send_queue_max=10))
    peer.session.receive(frame("hello", token="t"), 0.0)
    peer.session.authenticated(customer(), True)
    peer.session.follow(1, "s1", 0)
    peer.session.deliver(Source.SHOP, message_event(message(1, 1, author=AGENT_AUTHOR)))
    assert peer.frames() == []
    peer.session.reply({"type": "welcome"})
    peer.session.opened()
    assert [f["type"] for f in peer.frames()] == ["welcome", "message"]
    flooded = Peer(config=Config(send_queue_max=10))
    flooded.session.receive(frame("hello", token="t"), 0.0)
    flooded.session.authenticated(customer(), True)
    for seq in range(1, 12):
        flooded.session.deliver(Source.SHOP, message_event(message(1, seq)))
    assert flooded.session.close_code == CLOSE_TRY_AGAIN


# --------------------------------------------------------------- delivery
def test_messages_go_out_once_in_order() -> None:
    peer = opened_customer(t1=2)
    for seq in (3, 3, 2, 4):
        peer.session.deliver(Source.SHOP, message_event(message(1, seq, author=AGENT_AUTHOR)))
    assert [f["seq"] for f in peer.frames()] == [3, 4]


def test_a_gap_is_filled_from_the_database_before_anything_newer() -> None:
    peer = opened_customer(t1=2)
    peer.session.deliver(Source.SHOP, message_event(message(1, 5, author=AGENT_AUTHOR)))
    peer.session.deliver(Source.SHOP, message_event(message(1, 6, author=AGENT_AUTHOR)))
    assert peer.frames() == []
    assert peer.session.gaps() == [Gap(1, 2, 5)]
    assert peer.session.gaps() == []  # asked once
    codec = peer.session.codec
    peer.session.filled(1, [(s, False, codec.encode(views.message(message(1, s, author=AGENT_AUTHOR))))
                            for s in (3, 4, 5)])
    assert [f["seq"] for f in peer.frames()] == [3, 4, 5, 6]


def note(ticket: int, seq: int) -> Message:
    return replace(message(ticket, seq, author=AGENT_AUTHOR), body=f"notatka {seq}", internal=True)


def test_a_private_note_moves_a_customers_cursor_unseen_and_reaches_agents() -> None:
    cust = opened_customer(t1=6)
    support = Peer("c2")
    support.open_as(agent(), follows={1: ("s1", 6)})
    for m in (note(1, 7), message(1, 8, author=AGENT_AUTHOR)):
        cust.session.deliver(Source.SHOP, message_event(m))
        support.session.deliver(Source.SHOP, message_event(m))
    # The customer gets the public reply, once, with no gap asked for the note's seq.
    assert [(f["seq"], "internal" in f) for f in cust.frames()] == [(8, False)]
    assert cust.session.gaps() == [] and cust.session.follows[1].cursor == 8
    assert [(f["seq"], f.get("internal")) for f in support.frames()] == [(7, True), (8, None)]


def test_a_gap_fill_passes_over_a_private_note_for_a_customer() -> None:
    cust = opened_customer(t1=6)
    cust.session.deliver(Source.SHOP, message_event(message(1, 9, author=AGENT_AUTHOR)))
    assert cust.session.gaps() == [Gap(1, 6, 9)]
    codec = cust.session.codec
    cust.session.filled(1, [(7, False, None), (8, False, codec.encode(views.message(message(1, 8)))),
                            (9, False, codec.encode(views.message(message(1, 9))))])
    assert [f["seq"] for f in cust.frames()] == [8, 9]
    cust.session.deliver(Source.SHOP, message_event(note(1, 10)))
    cust.session.deliver(Source.SHOP, message_event(message(1, 11, author=AGENT_AUTHOR)))
    assert [f["seq"] for f in cust.frames()] == [11] and cust.session.gaps() == []


def test_own_messages_get_an_ack_not_a_copy() -> None:
    peer = opened_customer(t1=2)
    peer.session.own(1, 3)
    peer.session.deliver(Source.SHOP, message_event(message(1, 3), origin="c1"))
    # The echo arriving first is not sent back either.
    peer.session.deliver(Source.SHOP, message_event(message(1, 4), origin="c1"))
    peer.session.own(1, 4)
    assert peer.frames() == []
    assert peer.session.follows[1].cursor == 4


def test_an_own_message_ahead_of_the_cursor_fills_the_gap_without_echoing_it() -> None:
    peer = opened_customer(t1=2)
    peer.session.own(1, 5)  # acked before 3 and 4 (other senders) reached this connection
    assert peer.session.gaps() == [Gap(1, 2, 5)]
    codec = peer.session.codec
    peer.session.filled(1, [(s, False, codec.encode(views.message(message(1, s, author=AGENT_AUTHOR))))
                            for s in (3, 4, 5)])
    assert [f["seq"] for f in peer.frames()] == [3, 4]


def test_an_own_message_ahead_of_the_cursor_is_not_echoed_by_a_fill_that_beats_the_ack() -> None:
    peer = opened_customer(t1=2)
    # The node routes the stored message to its sender's connection before the ack
    # is recorded; the gap fill it asks for may come back first.
    peer.session.deliver(Source.SHOP, message_event(message(1, 5), origin="c1"))
    assert peer.session.gaps() == [Gap(1, 2, 5)]
    codec = peer.session.codec
    peer.session.filled(1, [(s, False, codec.encode(views.message(message(1, s, author=AGENT_AUTHOR))))
                            for s in (3, 4, 5)])
    peer.session.own(1, 5)
    assert [f["seq"] for f in peer.frames()] == [3, 4]
    assert peer.session.follows[1].cursor == 5


def test_held_messages_reach_customers_but_not_agents_until_released() -> None:
    cust = opened_customer(t1=0)
    support = Peer("c2")
    support.open_as(agent(), follows={1: ("s1", 0)})
    support.frames()
    held = message_event(message(1, 1, held=True), held=True)
    cust.session.deliver(Source.SHOP, held)
    support.session.deliver(Source.SHOP, held)
    assert [f["seq"] for f in cust.frames()] == [1]
    assert support.frames() == []
    release = Event("release", views.message(message(1, 1)))
    cust.session.deliver(Source.SHOP, release)
    support.session.deliver(Source.SHOP, release)
    assert cust.frames() == [] and [f["type"] for f in support.frames()] == ["message"]


def test_a_customer_meets_a_new_ticket_of_its_shop_through_its_first_message() -> None:
    peer = opened_customer()
    peer.session.deliver(Source.SHOP, message_event(message(9, 1, author=AGENT_AUTHOR)))
    assert [(f["ticket"], f["seq"]) for f in peer.frames()] == [(9, 1)]
    support = Peer("c2")
    support.open_as(agent())
    support.session.deliver(Source.SHOP, message_event(message(9, 1)))
    assert support.frames() == []  # agents follow tickets explicitly


def test_a_customer_sees_only_the_allow_listed_view_of_a_ticket() -> None:
    peer = opened_customer(t1=0)
    view = {"id": 1, "title": "T", "status": "open", "shop": "s1", "context": {"page_url": "x"},
            "created_by": "u9", "shop_record": {"claims": 3}, "customer_online": True, "plan": "priority",
            "unread": 7, "internal_field": "secret"}
    peer.session.deliver(Source.SHOP, Event("ticket", views.ticket(view)))
    (sent,) = peer.frames()
    assert sent["ticket"] == {"id": 1, "title": "T", "status": "open", "shop": "s1", "unread": 0}


def test_an_agent_gets_the_inbox_with_its_own_unread_count() -> None:
    support = Peer("c2")
    support.open_as(agent())
    support.session.unread[1] = 2
    view = {"id": 1, "last_seq": 9, "unread": 0}
    support.session.deliver(Source.INBOX, Event("ticket", views.ticket(view)))
    support.session.deliver(Source.INBOX, Event("ticket", views.ticket({"id": 4, "last_seq": 3, "unread": 0})))
    assert [(f["ticket"]["id"], f["ticket"]["unread"]) for f in support.frames()] == [(1, 2), (4, 3)]
    bot = Peer("c3")
    bot.open_as(agent(), feed=False)
    bot.session.deliver(Source.INBOX, Event("ticket", views.ticket(view)))
    assert bot.frames() == []


def test_typing_goes_to_the_other_side_only() -> None:
    cust = opened_customer(t1=0)
    colleague = Peer("c5")
    colleague.open_as(customer(sub="u2"), follows={1: ("s1", 0)})
    colleague.frames()
    typed = Event("typing", views.typing(1, customer()), origin="c1", side="customer")
    cust.session.deliver(Source.SHOP, typed)
    colleague.session.deliver(Source.SHOP, typed)
    assert cust.frames() == [] and colleague.frames() == []
    support = Peer("c2")
    support.open_as(agent(), follows={1: ("s1", 0)})
    support.frames()
    support.session.deliver(Source.SHOP, typed)
    assert [f["type"] for f in support.frames()] == ["typing"]


def test_an_unread_answer_carries_the_ref_of_the_read_that_asked() -> None:
    peer = opened_customer(t1=0)
    other = Peer("c9")
    other.open_as(customer(), follows={1: ("s1", 0)})
    other.frames()
    answer = Event("unread", views.unread({1: 0}, False), origin="c1", ref="r7")
    peer.session.deliver(Source.READER, answer)
    other.session.deliver(Source.READER, answer)
    assert peer.frames()[0]["ref"] == "r7" and "ref" not in other.frames()[0]
    assert peer.session.unread[1] == 0


def test_customers_see_only_how_many_agents_are_online() -> None:
    peer = opened_customer()
    peer.session.deliver(Source.PRESENCE, Event("presence", views.agent_presence("a1", "away")))
    peer.session.deliver(Source.PRESENCE, Event("presence", views.agents_online(2)))
    assert peer.frames() == [{"type": "presence", "agents_online": 2}]


def test_after_redis_returns_every_followed_ticket_catches_up() -> None:
    peer = opened_customer(t1=3, t2=0)
    peer.session.catch_up()
    assert sorted(peer.session.gaps(), key=lambda g: g.ticket) == [Gap(1, 3, None), Gap(2, 0, None)]
    peer.session.fill_failed()
    assert peer.session.close_code == CLOSE_TRY_AGAIN


def test_one_encoding_per_codec_however_many_receive() -> None:
    event = message_event(message(1, 1, author=AGENT_AUTHOR))
    peers = [Peer(f"c{i}", codec=MSGPACK if i % 2 else Peer().session.codec) for i in range(4)]
    for peer in peers:
        peer.open_as(customer(), follows={1: ("s1", 0)})
        peer.frames()
        peer.session.deliver(Source.SHOP, event)
    assert len(event._encoded) == 2
    assert all(p.frames()[0]["seq"] == 1 for p in peers)
    assert AT.tzinfo is not None
