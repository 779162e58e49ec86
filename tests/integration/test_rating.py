"""The customer's answer to "was the problem solved?" (`rate`), end to end on SQLite
and on PostgreSQL: yes with a rating closes the ticket, no reopens it with a new
reaction deadline; bad input, an agent, another shop and a ticket that is not
resolved are refused with the documented errors."""

from __future__ import annotations

import pytest

from tests.conftest import unique
from tests.integration.test_time_rules import open_ticket
from tests.wsclient import join


async def _resolved(server, clients, tokens, shop):
    customer, _ = await join(server, clients, tokens.customer(shop))
    ticket, _ = await open_ticket(customer, "minor", "Faktury")
    agent, _ = await join(server, clients, tokens.agent(unique("a"), "Anna"))
    await agent.request({"type": "send", "ticket": ticket["id"], "body": "Poprawione"}, "ack")
    resolved = await agent.request({"type": "update_ticket", "ticket": ticket["id"], "status": "resolved"}, "ticket")
    assert resolved["ticket"]["status"] == "resolved"
    await customer.expect("ticket", lambda f: f["ticket"]["id"] == ticket["id"] and f["ticket"]["status"] == "resolved")
    return customer, agent, ticket


async def test_yes_with_a_rating_closes_the_ticket(server, clients, tokens, shop):
    customer, agent, ticket = await _resolved(server, clients, tokens, shop)
    reply = await customer.request({"type": "rate", "ticket": ticket["id"], "score": 5, "comment": "Dzięki!"},
                                   "ticket")
    assert reply["ticket"]["status"] == "closed" and reply["ticket"]["closed_at"]
    note = await customer.expect("message", lambda f: f["ticket"] == ticket["id"] and "5/5" in f["body"])
    assert note["author"]["kind"] == "system"
    # The agent's inbox hears it closed.
    await agent.expect("ticket", lambda f: f["ticket"]["id"] == ticket["id"] and f["ticket"]["status"] == "closed")
    # Closed is final: a second answer is refused.
    again = await customer.request({"type": "rate", "ticket": ticket["id"], "score": 4}, "error")
    assert again["code"] == "closed_ticket"


async def test_no_reopens_the_ticket_with_a_new_deadline(server, clients, tokens, shop):
    customer, agent, ticket = await _resolved(server, clients, tokens, shop)
    reply = await customer.request({"type": "rate", "ticket": ticket["id"], "solved": False}, "ticket")
    reopened = reply["ticket"]
    assert reopened["status"] == "open" and reopened["resolved_at"] is None
    assert reopened["sla_step"] == "next_response" and reopened["sla_due_at"]
    await customer.expect("message", lambda f: f["ticket"] == ticket["id"] and "nie został rozwiązany" in f["body"])
    # Not resolved any more: nothing to rate.
    refused = await customer.request({"type": "rate", "ticket": ticket["id"], "score": 5}, "error")
    assert refused["code"] == "conflict"


@pytest.mark.parametrize("frame, field", [
    ({"score": 0}, "'score'"), ({"score": 6}, "'score'"), ({"score": 4.5}, "'score'"), ({"score": "5"}, "'score'"),
    ({"score": True}, "'score'"), ({}, "'score'"), ({"solved": "no"}, "'solved'"),
    ({"solved": False, "score": 3}, "'score'"), ({"score": 5, "comment": "x" * 1001}, "'comment'"),
    ({"score": 5, "comment": "a\x00b"}, "'comment'"), ({"score": 5, "comment": 7}, "'comment'"),
    ({"score": 5, "ticket": "abc"}, "'ticket'"),
])
async def test_bad_answers_name_the_field(server, clients, tokens, shop, frame, field):
    customer, _ = await join(server, clients, tokens.customer(shop))
    ticket, _ = await open_ticket(customer, "minor", "Faktury")
    error = await customer.request({"type": "rate", "ticket": ticket["id"], **frame}, "error")
    assert error["code"] == "bad_request" and field in error["message"], error
    assert (await customer.request({"type": "ping"}, "pong"))["type"] == "pong"  # the connection stays


async def test_only_the_shops_own_users_answer_and_only_a_resolved_ticket(server, clients, tokens, shop):
    customer, agent, ticket = await _resolved(server, clients, tokens, shop)
    stranger, _ = await join(server, clients, tokens.customer(unique("other")))
    other = await stranger.request({"type": "rate", "ticket": ticket["id"], "score": 1}, "error")
    assert other["code"] == "forbidden"
    missing = await stranger.request({"type": "rate", "ticket": 99_999_999, "score": 1}, "error")
    assert missing["code"] == "forbidden" and missing["message"] == other["message"]
    by_agent = await agent.request({"type": "rate", "ticket": ticket["id"], "score": 5}, "error")
    assert by_agent["code"] == "forbidden"
    fresh, _ = await open_ticket(customer, "minor", "Inne")
    early = await customer.request({"type": "rate", "ticket": fresh["id"], "score": 5}, "error")
    assert early["code"] == "conflict"
    # Another user of the same shop may answer.
    colleague, _ = await join(server, clients, tokens.customer(shop, sub="colleague"))
    done = await colleague.request({"type": "rate", "ticket": ticket["id"], "score": 3}, "ticket")
    assert done["ticket"]["status"] == "closed"
