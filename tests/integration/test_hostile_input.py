"""Hostile input against a real server process, real Redis, SQLite and PostgreSQL.

Strings the database or Redis would refuse (NUL, other control characters) are
refused at the edge, naming the field, without costing anyone else's send; reader
identities and Redis names stay apart whatever the ids contain; departments are the
configured ones; a customer cannot tell a missing ticket from another shop's; only
http(s) links are kept from a customer's context.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Tokens, unique
from tests.servers import ServerProcess
from tests.wsclient import Client

MAX_USER_CONNECTIONS = 2
MISSING = 10**12  # a ticket id nobody has (ids are sequential: this one is far ahead)


@pytest.fixture(scope="module")
def server(server_env):
    env = {**server_env, "POMOC_MAX_USER_CONNECTIONS": str(MAX_USER_CONNECTIONS)}
    proc = ServerProcess(env, log_path=Path(server_env["POMOC_TMP"]) / "server-hostile.log").start()
    yield proc
    proc.stop()


def server_log(server: ServerProcess) -> str:
    assert server.log_path is not None
    return server.log_path.read_text(errors="replace")


async def connect(server: ServerProcess, clients: list, token: str) -> Client:
    client = await Client.connect(server.url)
    clients.append(client)
    await client.hello(token)
    return client


async def open_ticket(client: Client, title: str = "Płatności nie działają", **extra: Any) -> dict:
    frame = {"type": "open_ticket", "title": title, "body": "Klienci nie mogą zapłacić.", "severity": "major",
             "client_id": str(uuid.uuid4()), **extra}
    reply = await client.request(frame, "ticket")
    assert reply["type"] == "ticket", reply
    return reply["ticket"]


async def still_open(client: Client) -> None:
    assert (await client.request({"type": "ping"}, "pong"))["type"] == "pong"


def refused(reply: dict, field: str) -> None:
    assert (reply["type"], reply["code"]) == ("error", "bad_request"), reply
    assert f"'{field}'" in reply["message"], reply


# ------------------------------------------------ characters the database refuses
def _open(**fields: Any) -> dict:
    frame = {"type": "open_ticket", "title": "Faktury korekta", "body": "Nie mogę wystawić korekty.",
             "client_id": str(uuid.uuid4())}
    return {**frame, **fields}


CUSTOMER_FRAMES = [
    ("title", lambda t: _open(title="Faktury\x00korekta")),
    ("title", lambda t: _open(title="Faktury\x07korekta")),
    ("body", lambda t: _open(body="Nie działa\x1b[31m")),
    ("client_id", lambda t: _open(client_id="c\x00")),
    ("client_id", lambda t: _open(client_id="c\x7f")),
    ("context.browser", lambda t: _open(context={"browser": "Fire\x00fox"})),
    ("context.steps_tried", lambda t: _open(context={"steps_tried": "restart\x0b"})),
    ("context.occurred_at", lambda t: _open(context={"occurred_at": "\x00"})),
    ("attachments", lambda t: _open(attachments=["a\x00b"])),
    ("body", lambda t: {"type": "send", "ticket": t, "body": "x\x00y"}),
    ("body", lambda t: {"type": "send", "ticket": t, "body": "x\x08y"}),
    ("client_id", lambda t: {"type": "send", "ticket": t, "body": "ok", "client_id": "c\x00"}),
    ("client_id", lambda t: {"type": "send", "ticket": t, "body": "ok", "client_id": "c\n"}),
]

AGENT_FRAMES = [
    ("department", lambda t: {"type": "update_ticket", "ticket": t, "department": "pay\x00ments"}),
    ("assignee", lambda t: {"type": "update_ticket", "ticket": t, "assignee": "ag\x00ent"}),
    ("assignee", lambda t: {"type": "update_ticket", "ticket": t, "assignee": "ag\u200bent"}),
    ("department", lambda t: {"type": "list_tickets", "department": "pay\x00ments"}),
    ("client_id", lambda t: {"type": "send", "ticket": t, "body": "ok", "client_id": "\x00"}),
]


@pytest.mark.parametrize("field,make", CUSTOMER_FRAMES, ids=[f"{f}-{i}" for i, (f, _) in enumerate(CUSTOMER_FRAMES)])
async def test_a_customer_string_the_database_would_refuse_is_a_bad_request_naming_the_field(
        server, clients, tokens, shop, field, make):
    customer = await connect(server, clients, tokens.customer(shop))
    ticket = await open_ticket(customer)
    reply = await customer.request(make(ticket["id"]), "never")
    refused(reply, field)
    await still_open(customer)
    assert "Traceback" not in server_log(server)


@pytest.mark.parametrize("field,make", AGENT_FRAMES, ids=[f"{f}-{i}" for i, (f, _) in enumerate(AGENT_FRAMES)])
async def test_an_agent_string_the_database_would_refuse_is_a_bad_request_naming_the_field(
        server, clients, tokens, shop, field, make):
    customer = await connect(server, clients, tokens.customer(shop))
    ticket = await open_ticket(customer)
    agent = await connect(server, clients, tokens.agent(unique("agent")))
    reply = await agent.request(make(ticket["id"]), "never")
    refused(reply, field)
    await still_open(agent)
    assert "Traceback" not in server_log(server)


async def test_text_keeps_its_line_breaks_and_tabs(server, clients, tokens, shop):
    customer = await connect(server, clients, tokens.customer(shop))
    ticket = await open_ticket(customer, body="Krok 1:\tkoszyk\r\nKrok 2:\tpłatność\n",
                               context={"steps_tried": "wylogowanie\nczyszczenie cache"})
    ack = await customer.request({"type": "send", "ticket": ticket["id"], "body": "a\tb\r\nc"}, "ack")
    assert ack["type"] == "ack", ack
    history = await customer.request({"type": "history", "ticket": ticket["id"]}, "history")
    bodies = [m["body"] for m in history["messages"]]
    assert "Krok 1:\tkoszyk\r\nKrok 2:\tpłatność\n" in bodies and "a\tb\r\nc" in bodies


async def test_a_refused_send_costs_nobody_else_their_send(server, clients, tokens):
    """Sends arriving together share one group commit on PostgreSQL: the refused one
    never reaches it, and everyone else's is acknowledged."""
    senders = []
    for _ in range(3):
        customer = await connect(server, clients, tokens.customer(unique("shop")))
        senders.append((customer, (await open_ticket(customer))["id"]))
    hostile, hostile_ticket = senders[0]
    frames = [(hostile, {"type": "send", "ticket": hostile_ticket, "body": "zły", "client_id": "bad\x00",
                         "ref": "bad"}),
              (hostile, {"type": "send", "ticket": hostile_ticket, "body": "dobry", "client_id": "good-0",
                         "ref": "good-0"})]
    for n, (customer, ticket_id) in enumerate(senders[1:], start=1):
        frames += [(customer, {"type": "send", "ticket": ticket_id, "body": f"wiadomość {i}",
                               "client_id": f"good-{n}-{i}", "ref": f"good-{n}-{i}"}) for i in range(5)]
    await asyncio.gather(*(client.send(frame) for client, frame in frames))
    bad = await hostile.expect("error", ref="bad")
    refused(bad, "client_id")
    for client, frame in frames[1:]:
        ack = await client.expect("ack", ref=frame["ref"])
        assert ack["client_id"] == frame["client_id"]
    assert "Traceback" not in server_log(server)
    assert "unavailable" not in [f.get("code") for c, _ in senders for f in c.pending("error")]


async def test_sequence_numbers_beyond_the_databases_integers_are_refused(server, clients, tokens, shop):
    customer = await connect(server, clients, tokens.customer(shop))
    ticket = await open_ticket(customer)
    again = await Client.connect(server.url)
    clients.append(again)
    reply = await again.request({"type": "hello", "token": tokens.customer(shop),
                                 "resume": {str(ticket["id"]): 2**40}}, "welcome")
    refused(reply, "resume")
    await again.hello(tokens.customer(shop), resume={str(ticket["id"]): 0})
    assert "Traceback" not in server_log(server)


async def test_the_longest_client_id_opens_a_ticket(server, clients, tokens, shop):
    customer = await connect(server, clients, tokens.customer(shop))
    ticket = await open_ticket(customer, client_id="k" * 200)
    assert ticket["id"] > 0
    assert "Traceback" not in server_log(server)


async def test_a_deflection_query_with_nul_is_a_bad_request(server, tokens, shop):
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as http:
        articles = (await http.get("/api/help/search", params={"q": "faktura"})).json()["articles"]
        response = await http.post("/api/help/deflections", json={"article": articles[0]["id"], "query": "x\x00"},
                                   headers={"Authorization": f"Bearer {tokens.customer(shop)}"})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "bad_request" and "query" in response.json()["error"]["message"]
    assert "Traceback" not in server_log(server)


# --------------------------------------------------------- reader identities
async def test_ids_with_colons_never_share_unread_state_or_connection_caps(server, clients, tokens):
    """Shop `X:b` user `c` and shop `X` user `b:c` once had one reader key `c:X:b:c`."""
    base = unique("shop")
    first = tokens.customer(f"{base}:b", sub="c")
    second = tokens.customer(base, sub="b:c")
    # The first user at its connection cap leaves the second one's untouched.
    firsts = [await connect(server, clients, first) for _ in range(MAX_USER_CONNECTIONS)]
    over = await Client.connect(server.url)
    clients.append(over)
    assert (await over.request({"type": "hello", "token": first}, "welcome"))["code"] == "rate_limited"
    seconds = [await connect(server, clients, second) for _ in range(MAX_USER_CONNECTIONS)]

    ticket = await open_ticket(firsts[0])
    agent = await connect(server, clients, tokens.agent(unique("agent")))
    await agent.request({"type": "follow", "ticket": ticket["id"]}, "ticket")
    await agent.request({"type": "send", "ticket": ticket["id"], "body": "Sprawdzamy."}, "ack")
    for client in firsts:
        unread = await client.expect("unread", where=lambda f: str(ticket["id"]) in f["tickets"])
        assert unread["badge"] is True
    # The unread frames above went out to one reader channel in one step: had the
    # second user shared it, its frame would be queued before this pong.
    for client in seconds:
        await still_open(client)
        assert not client.pending("unread"), client.pending("unread")
    assert "Traceback" not in server_log(server)


async def test_a_user_id_ending_like_a_ticket_key_keeps_its_own_unread_book(server, clients, tokens):
    """User `u` and user `u:<ticket>` of one shop: the one's unread book and the
    other's unread set of that ticket once had the same Redis name."""
    shop = unique("shop")
    owner = await connect(server, clients, tokens.customer(shop, sub="u"))
    ticket = await open_ticket(owner)
    tid = str(ticket["id"])
    colleague = await connect(server, clients, tokens.customer(shop, sub=f"u:{tid}"))
    agent = await connect(server, clients, tokens.agent(unique("agent")))
    await agent.request({"type": "follow", "ticket": ticket["id"]}, "ticket")
    await agent.request({"type": "send", "ticket": ticket["id"], "body": "Sprawdzamy."}, "ack")
    for client in (owner, colleague):
        await client.expect("unread", where=lambda f: f["tickets"].get(tid, 0) >= 1)
    read = await colleague.request({"type": "read", "ticket": ticket["id"], "seq": 100}, "unread")
    assert read["tickets"][tid] == 0
    again = await Client.connect(server.url)
    clients.append(again)
    welcome = await again.hello(tokens.customer(shop, sub="u"))
    assert welcome["unread"] == {tid: 1} and welcome["badge"] is True
    assert "Traceback" not in server_log(server)


# ----------------------------------------------------------------- departments
async def test_agents_set_and_filter_only_configured_departments(server, clients, tokens, shop):
    customer = await connect(server, clients, tokens.customer(shop))
    ticket = await open_ticket(customer)
    agent = await connect(server, clients, tokens.agent(unique("agent")))
    for frame in ({"type": "update_ticket", "ticket": ticket["id"], "department": "marketing"},
                  {"type": "list_tickets", "department": "marketing"}):
        reply = await agent.request(frame, "never")
        refused(reply, "department")
        assert "payments" in reply["message"] and "technical" in reply["message"], reply
    moved = await agent.request({"type": "update_ticket", "ticket": ticket["id"], "department": "invoicing"},
                                "ticket")
    assert moved["ticket"]["department"] == "invoicing"
    listed = await agent.request({"type": "list_tickets", "department": "invoicing"}, "tickets")
    assert ticket["id"] in [t["id"] for t in listed["tickets"]]
    everything = await agent.request({"type": "list_tickets", "department": "*"}, "tickets")
    assert everything["type"] == "tickets"
    cleared = await agent.request({"type": "update_ticket", "ticket": ticket["id"], "department": None}, "ticket")
    assert cleared["ticket"]["department"] is None


# ------------------------------------------------- missing and foreign tickets
def _naming(ticket_id: int) -> list[dict]:
    return [{"type": "send", "ticket": ticket_id, "body": "x"},
            {"type": "send", "ticket": ticket_id, "body": "x", "attachments": ["AAAAAAAAAAAAAAAAAAAAAA"]},
            {"type": "read", "ticket": ticket_id, "seq": 1},
            {"type": "typing", "ticket": ticket_id},
            {"type": "history", "ticket": ticket_id},
            {"type": "follow", "ticket": ticket_id},
            {"type": "update_ticket", "ticket": ticket_id, "status": "resolved"}]


async def test_a_customer_cannot_tell_a_missing_ticket_from_another_shops(server, clients, tokens, shop):
    owner = await connect(server, clients, tokens.customer(unique("shop")))
    foreign = (await open_ticket(owner))["id"]
    stranger = await connect(server, clients, tokens.customer(shop))
    for theirs, missing in zip(_naming(foreign), _naming(MISSING), strict=True):
        a = await stranger.request(theirs, "never")
        b = await stranger.request(missing, "never")
        assert a["code"] == "forbidden", (theirs, a)
        assert {k: v for k, v in a.items() if k != "ref"} == {k: v for k, v in b.items() if k != "ref"}, (a, b)
    resumed = await Client.connect(server.url)
    clients.append(resumed)
    await resumed.send({"type": "hello", "token": tokens.customer(shop), "resume": {str(foreign): 0,
                                                                                     str(MISSING): 0}})
    await resumed.expect("welcome")
    # One refusal for both, naming them alike: nothing tells the foreign ticket from the missing one.
    denied = await resumed.expect("error")
    assert denied["code"] == "forbidden" and sorted(denied["tickets"]) == sorted([foreign, MISSING]), denied
    assert "not yours or do not exist" in denied["message"]
    headers = {"Authorization": f"Bearer {tokens.customer(shop)}"}
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as http:
        answers = [await http.post(f"/api/tickets/{ticket_id}/attachments", headers=headers,
                                   files={"file": ("a.txt", b"hello")}) for ticket_id in (foreign, MISSING)]
    assert [r.status_code for r in answers] == [403, 403]
    assert answers[0].json() == answers[1].json()


async def test_agents_still_hear_that_a_ticket_does_not_exist(server, clients, tokens):
    agent = await connect(server, clients, tokens.agent(unique("agent")))
    for frame in _naming(MISSING):
        assert (await agent.request(frame, "never"))["code"] == "not_found", frame
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as http:
        response = await http.post(f"/api/tickets/{MISSING}/attachments", files={"file": ("a.txt", b"hello")},
                                   headers={"Authorization": f"Bearer {tokens.agent(unique('agent'))}"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


# ----------------------------------------------------------------------- links
@pytest.mark.parametrize("link", [
    "javascript:alert(document.domain)", " JaVaScRiPt:alert(1)", "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)", "file:///etc/passwd", "//evil.example/x", "/admin/orders/1", "https://", "http:/x",
    "java\tscript:alert(1)", "12345",
])
async def test_only_http_links_are_kept_from_a_customers_context(server, clients, tokens, shop, link):
    customer = await connect(server, clients, tokens.customer(shop))
    ticket = await open_ticket(customer, context={"page_url": link, "order_url": link, "browser": "Firefox"})
    agent = await connect(server, clients, tokens.agent(unique("agent")))
    seen = await agent.request({"type": "follow", "ticket": ticket["id"]}, "ticket")
    context = seen["ticket"]["context"]
    assert "page_url" not in context and "order_url" not in context, context
    assert context["browser"] == "Firefox"


async def test_http_and_https_links_are_kept(server, clients, tokens: Tokens, shop):
    customer = await connect(server, clients, tokens.customer(shop))
    ticket = await open_ticket(customer, context={"page_url": "https://sklep.example/admin/orders?page=2",
                                                  "order_url": "HTTP://sklep.example/admin/orders/55"})
    agent = await connect(server, clients, tokens.agent(unique("agent")))
    context = (await agent.request({"type": "follow", "ticket": ticket["id"]}, "ticket"))["ticket"]["context"]
    assert context["page_url"] == "https://sklep.example/admin/orders?page=2"
    assert context["order_url"] == "HTTP://sklep.example/admin/orders/55"


@pytest.mark.parametrize("claims", [
    {"sub": "own\x00er"},
    {"shop_name": "Sklep\x00"},
    {"name": "Ania\x1b[31m"},
    {"email": "a@b.pl\x00"},
])
async def test_a_token_claim_the_database_would_refuse_is_unauthorized_naming_it(
        server, clients, tokens: Tokens, shop, claims):
    claims = dict(claims)  # the parameter is shared by both databases' runs
    sub = claims.pop("sub", "owner")
    client = await Client.connect(server.url)
    clients.append(client)
    reply = await client.request({"type": "hello", "token": tokens.customer(shop, sub=sub, **claims)}, "welcome")
    assert (reply["type"], reply["code"]) == ("error", "unauthorized"), reply
    assert await client.wait_closed(10) == 4401
    assert "Traceback" not in server_log(server)
