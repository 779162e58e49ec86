"""An agent's inbox comes in pages, most urgent first: a welcome costs the same with
a handful of open tickets or thousands. This module has a database of its own, so it
knows every open ticket there is."""

from __future__ import annotations

import uuid

import pytest

from tests import services
from tests.conftest import unique
from tests.wsclient import join

SEVERITIES = ["minor", "critical", "question", "major", "minor"]


async def open_tickets(node, clients, tokens) -> list[dict]:
    opened = []
    for severity in SEVERITIES:
        customer, _ = await join(node, clients, tokens.customer(unique("shop")))
        reply = await customer.request({"type": "open_ticket", "title": f"Problem {severity}", "severity": severity,
                                        "body": "Od rana klienci nie mogą zapłacić kartą w koszyku.",
                                        "client_id": str(uuid.uuid4())}, "ticket")
        opened.append(reply["ticket"])
    return opened


async def test_the_welcome_lists_the_most_urgent_page_and_list_tickets_pages_on(at_clock, clients):
    node, tokens = at_clock(services.WORKING_CLOCK, POMOC_INBOX_PAGE="3")
    opened = await open_tickets(node, clients, tokens)
    agent, welcome = await join(node, clients, tokens.agent(unique("a")), feed=True)

    first = welcome["tickets"]
    assert len(first) == 3 and welcome["tickets_more"] is True
    assert first[0]["severity"] == "critical"
    assert [t["sla_due_at"] for t in first] == sorted(t["sla_due_at"] for t in first)

    everything = await agent.request({"type": "list_tickets", "limit": 10}, "tickets")
    assert everything["more"] is False
    assert sorted(t["id"] for t in everything["tickets"]) == sorted(t["id"] for t in opened)
    # The first page is the head of the whole list, in the same order.
    assert [t["id"] for t in everything["tickets"][:3]] == [t["id"] for t in first]

    page = await agent.request({"type": "list_tickets"}, "tickets")
    assert [t["id"] for t in page["tickets"]] == [t["id"] for t in first] and page["more"] is True
    exact = await agent.request({"type": "list_tickets", "limit": 5}, "tickets")
    assert len(exact["tickets"]) == 5 and exact["more"] is False


@pytest.mark.parametrize("limit", [0, -1, 501, "10", 2.5, None, True])
async def test_a_bad_page_size_is_refused_and_the_connection_stays(at_clock, clients, limit):
    node, tokens = at_clock(services.WORKING_CLOCK)
    agent, _ = await join(node, clients, tokens.agent(unique("a")))
    reply = await agent.request({"type": "list_tickets", "limit": limit}, "tickets")
    if limit is None:
        assert reply["type"] == "tickets"  # an absent limit: the default page
    else:
        assert reply["type"] == "error" and reply["code"] == "bad_request"
        assert "limit" in reply["message"]
    assert (await agent.request({"type": "ping"}, "pong"))["type"] == "pong"


async def test_customers_still_get_all_their_shops_tickets(at_clock, clients):
    node, tokens = at_clock(services.WORKING_CLOCK, POMOC_INBOX_PAGE="1")
    shop = unique("shop")
    customer, _ = await join(node, clients, tokens.customer(shop))
    for n in range(3):
        await customer.request({"type": "open_ticket", "title": f"Pytanie {n}", "severity": "question",
                                "body": "Jak ustawić koszty wysyłki?", "client_id": str(uuid.uuid4())}, "ticket")
    _, welcome = await join(node, clients, tokens.customer(shop, sub="colleague"))
    assert len(welcome["tickets"]) == 3 and "tickets_more" not in welcome


async def test_a_status_page_lists_only_that_status_whatever_the_agents_departments(at_clock, clients):
    node, tokens = at_clock(services.WORKING_CLOCK)
    opened = await open_tickets(node, clients, tokens)
    agent, _ = await join(node, clients, tokens.agent(unique("a")))  # no departments claim: its default inbox
    done = opened[0]["id"]
    await agent.request({"type": "update_ticket", "ticket": done, "status": "resolved"}, "ticket")
    for department in (None, "*"):
        frame = {"type": "list_tickets", "status": "resolved", "limit": 500}
        if department:
            frame["department"] = department
        resolved = await agent.request(frame, "tickets")
        assert resolved["tickets"] and {t["status"] for t in resolved["tickets"]} == {"resolved"}
        assert done in [t["id"] for t in resolved["tickets"]]
    active = await agent.request({"type": "list_tickets", "limit": 500}, "tickets")
    assert done not in [t["id"] for t in active["tickets"]]
    assert {t["status"] for t in active["tickets"]} <= {"open", "waiting_on_customer"}
