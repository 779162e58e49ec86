"""Collision in the sans-I/O core: who takes `viewers` and teammates' `typing`, the
`unfollow` and `send` extensions' parsing, and when a send must look for a
teammate's newer reply."""

from __future__ import annotations

import pytest

from server.errors import BadRequest
from server.protocol import frames, views
from server.protocol.events import Event, Source
from server.rules.tickets import may_be_stale, stale_reply
from tests.fast.pair import Peer, agent, customer


def _peer(conn_id: str, principal, *, feed: bool = True, follows: dict | None = None) -> Peer:
    peer = Peer(conn_id)
    peer.open_as(principal, feed=feed, follows=follows or {})
    peer.frames()
    return peer


def test_viewers_go_to_agents_following_the_ticket_only() -> None:
    seen = Event("viewers", views.viewers(1, [("a1", "Anna")]), origin="c-anna")
    follower = _peer("c2", agent("a2"), follows={1: ("s1", 0)})
    elsewhere = _peer("c3", agent("a3"), follows={2: ("s1", 0)})
    shop = _peer("c4", customer(), follows={1: ("s1", 0)})
    origin = _peer("c-anna", agent("a1"), follows={1: ("s1", 0)})
    for peer in (follower, elsewhere, shop, origin):
        peer.session.deliver(Source.INBOX, seen)
    assert follower.frames() == [{"type": "viewers", "ticket": 1, "agents": [{"id": "a1", "name": "Anna"}]}]
    assert elsewhere.frames() == [] and shop.frames() == [] and origin.frames() == []


def test_an_agent_s_typing_reaches_the_customer_and_the_other_agents_not_itself() -> None:
    typed = Event("typing", views.typing(1, agent("a1")), origin="c1", side="agent")
    teammate = _peer("c2", agent("a2"), follows={1: ("s1", 0)})
    same_agent = _peer("c3", agent("a1"), follows={1: ("s1", 0)})
    shop = _peer("c4", customer(), follows={1: ("s1", 0)})
    not_following = _peer("c5", agent("a5"))
    for peer in (teammate, same_agent, shop, not_following):
        peer.session.deliver(Source.SHOP, typed)
    assert [f["who"]["id"] for f in teammate.frames()] == ["a1"]
    assert [f["who"]["kind"] for f in shop.frames()] == ["agent"]
    assert same_agent.frames() == [] and not_following.frames() == []


def test_unfollow_stops_a_ticket_s_messages_and_says_whether_it_was_viewed() -> None:
    peer = _peer("c1", agent(), follows={1: ("s1", 0), 2: ("s1", 0)})
    peer.session.follows[1].viewing = True
    assert peer.session.viewing() == [1]
    gone = peer.session.unfollow(1)
    assert gone is not None and gone.viewing and peer.session.viewing() == []
    assert peer.session.unfollow(1) is None
    assert 1 not in peer.session.follows and 2 in peer.session.follows


@pytest.mark.parametrize(("frame", "expected"), [
    ({"type": "send", "ticket": 1, "body": "x"}, (None, False)),
    ({"type": "send", "ticket": 1, "body": "x", "seen_seq": 0}, (0, False)),
    ({"type": "send", "ticket": 1, "body": "x", "seen_seq": 7, "force": True}, (7, True)),
])
def test_send_carries_seen_seq_and_force(frame: dict, expected: tuple) -> None:
    parsed = frames.parse(frame, frames.Limits())
    assert isinstance(parsed, frames.Send) and (parsed.seen_seq, parsed.force) == expected


@pytest.mark.parametrize(("frame", "field"), [
    ({"type": "send", "ticket": 1, "body": "x", "seen_seq": True}, "seen_seq"),
    ({"type": "send", "ticket": 1, "body": "x", "seen_seq": 1.5}, "seen_seq"),
    ({"type": "send", "ticket": 1, "body": "x", "force": 1}, "force"),
    ({"type": "unfollow"}, "ticket"),
    ({"type": "unfollow", "ticket": 0}, "ticket"),
    ({"type": "list_tickets", "shop": ""}, "shop"),
    ({"type": "list_tickets", "shop": "a\u0000"}, "shop"),
    ({"type": "list_tickets", "shop": 5}, "shop"),
])
def test_bad_collision_fields_are_named(frame: dict, field: str) -> None:
    with pytest.raises(BadRequest, match=f"'{field}'"):
        frames.parse(frame, frames.Limits())


@pytest.mark.parametrize(("seen", "last", "look"), [
    (None, 9, False),  # not asked
    (9, 9, False),  # up to date: nothing more than the row
    (12, 9, False),  # a console ahead of the row (a client's mistake) is no conflict
    (8, 9, True),
    (0, 1, True),
])
def test_a_send_looks_for_newer_replies_only_when_the_thread_moved(seen: int | None, last: int, look: bool) -> None:
    assert may_be_stale(seen, last) is look


def test_the_stale_answer_names_the_ticket_and_the_newer_seqs() -> None:
    frame = views.error(stale_reply(4, [7, 9]), "r1")
    assert frame["code"] == "stale" and frame["ticket"] == 4 and frame["seqs"] == [7, 9] and frame["ref"] == "r1"
