"""Cross-node delivery with two nodes joined in memory: routers, envelopes, sessions."""

from __future__ import annotations

from collections.abc import Callable

from server.protocol import views
from server.protocol.events import Event, Source, envelope, open_envelope
from server.rules.records import Author
from tests.fast.pair import MemoryBus, Node, Peer, agent, customer, message, message_event

CHANNEL = "p:ch:shop:s1"
AGENT_AUTHOR = Author("agent", "a1", "Agnieszka")


def two_nodes(lose: Callable[[str, bytes], bool] | None = None) -> tuple[Node, Node, Peer, Peer]:
    bus = MemoryBus() if lose is None else MemoryBus(lose=lose)
    a, b = Node("node-a", bus), Node("node-b", bus)
    cust = Peer("node-a:1")
    cust.open_as(customer(), follows={1: ("s1", 0)})
    support = Peer("node-b:1")
    support.open_as(agent(), follows={1: ("s1", 0)})
    a.listen(cust, CHANNEL, Source.SHOP)
    b.listen(support, CHANNEL, Source.SHOP)
    return a, b, cust, support


def test_a_message_sent_on_one_node_reaches_the_other_once() -> None:
    a, b, cust, support = two_nodes()
    for seq in (1, 2, 3):
        a.announce(CHANNEL, message_event(message(1, seq), origin="node-a:1"))
    # Node A's own event came back from the bus too and was dropped: no echo to the sender.
    assert cust.frames() == []
    assert [f["seq"] for f in support.frames()] == [1, 2, 3]


def test_an_event_lost_between_nodes_is_filled_from_the_database_in_order() -> None:
    lost = {2}

    def lose(channel: str, payload: bytes) -> bool:
        _, event = open_envelope(payload)
        return event.kind == "message" and event.frame["seq"] in lost

    a, b, cust, support = two_nodes(lose)
    for seq in (1, 2, 3, 4):
        a.announce(CHANNEL, message_event(message(1, seq), origin="node-a:1"))
    assert [f["seq"] for f in support.frames()] == [1]
    (gap,) = support.session.gaps()
    assert (gap.ticket, gap.after, gap.upto) == (1, 1, 3)
    codec = support.session.codec
    support.session.filled(1, [(s, False, codec.encode(views.message(message(1, s)))) for s in (2, 3)])
    assert [f["seq"] for f in support.frames()] == [2, 3, 4]


def test_replies_flow_back_and_the_agents_own_tab_gets_no_copy() -> None:
    a, b, cust, support = two_nodes()
    second_tab = Peer("node-a:2")
    second_tab.open_as(agent(), follows={1: ("s1", 0)})
    a.listen(second_tab, CHANNEL, Source.SHOP)
    support.session.own(1, 1)
    b.announce(CHANNEL, message_event(message(1, 1, author=AGENT_AUTHOR), origin="node-b:1"))
    assert [f["body"] for f in cust.frames()] == ["wiadomość 1"]
    assert [f["seq"] for f in second_tab.frames()] == [1]  # the agent's other tab, on the other node
    assert support.frames() == []


def test_a_node_without_listeners_on_a_channel_ignores_it() -> None:
    a, b, cust, support = two_nodes()
    b.router.forget(support.session, support.session.channels)
    a.announce(CHANNEL, message_event(message(1, 1)))
    assert support.frames() == []


def test_envelopes_keep_what_the_receivers_decide_on() -> None:
    event = Event("typing", views.typing(1, customer()), origin="node-a:1", side="customer", ref="r")
    node, back = open_envelope(envelope("node-a", event))
    assert node == "node-a"
    assert (back.kind, back.frame, back.origin, back.side, back.ref) == ("typing", event.frame, "node-a:1",
                                                                         "customer", "r")
    held = open_envelope(envelope("n", Event("message", {"ticket": 1}, held=True)))[1]
    assert held.held and held.origin is None


def test_the_unread_scripts_envelope_is_an_event_envelope() -> None:
    # What server/realtime/unread.py's Lua builds with cjson.encode (keys in its order).
    payload = b'{"e":{"k":"unread","f":{"badge":true,"type":"unread","tickets":{"17":3}}},"n":"node"}'
    node, event = open_envelope(payload)
    assert node == "node" and event.kind == "unread" and event.frame["tickets"] == {"17": 3}


def test_a_router_knows_its_own_envelopes_without_opening_them() -> None:
    from server.protocol.events import own_prefix
    from server.realtime.router import Router

    opened: list[bytes] = []

    def opener(payload: bytes) -> tuple[str, Event]:
        opened.append(payload)
        return open_envelope(payload)

    router: Router = Router("node-a", opener, own_prefix("node-a"))
    peer = Peer("node-a:1")
    peer.open_as(customer(), follows={1: ("s1", 0)})
    router.listen(peer.session, CHANNEL, Source.SHOP)
    router.route_payload(CHANNEL, envelope("node-a", message_event(message(1, 1, author=AGENT_AUTHOR))))
    assert opened == [] and peer.frames() == []
    # A node whose id merely begins like this one's is another node.
    router.route_payload(CHANNEL, envelope("node-ab", message_event(message(1, 1, author=AGENT_AUTHOR))))
    assert len(opened) == 1 and [f["seq"] for f in peer.frames()] == [1]
