"""Ticket intake through the real server: screenshots, help suggestions, completeness, routing."""

from __future__ import annotations

import io
import uuid

import httpx
import pytest
from PIL import Image

from tests.conftest import unique
from tests.wsclient import join


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 40), (240, 124, 0)).save(out, format="PNG")
    return out.getvalue()




async def test_a_pasted_screenshot_reaches_the_agent_with_the_ticket(server, clients, tokens, shop):
    token = tokens.customer(shop)
    async with httpx.AsyncClient(base_url=server.http) as http:
        upload = await http.post("/api/attachments", headers={"Authorization": f"Bearer {token}"},
                                 files={"file": ("zrzut.png", png(), "image/png")})
        assert upload.status_code == 201, upload.text
        attachment = upload.json()
        assert attachment["content_type"] == "image/png"
        agent, _ = await join(server, clients, tokens.agent(unique("a")))
        customer, _ = await join(server, clients, token)
        opened = await customer.request({
            "type": "open_ticket", "title": "Błąd koszyka", "severity": "major", "client_id": str(uuid.uuid4()),
            "body": "Od 10:00 w koszyku pojawia się błąd 500 po kliknięciu Zamawiam. Wyczyściłem cache.",
            "attachments": [attachment["id"]]}, "ticket")
        ticket = opened["ticket"]
        first = await customer.expect("message", ticket=ticket["id"], seq=1)
        assert [a["id"] for a in first["attachments"]] == [attachment["id"]]
        await agent.request({"type": "follow", "ticket": ticket["id"]}, "ticket")
        page = await agent.request({"type": "history", "ticket": ticket["id"]}, "history")
        entry = page["messages"][0]["attachments"][0]
        assert entry["name"] == "zrzut.png" and entry["url"]
        download = await http.get(entry["url"])
        assert download.status_code == 200 and download.content == png()
        assert download.headers["x-content-type-options"] == "nosniff"
        # Another shop cannot fetch it, not even with a token of its own.
        stranger = tokens.customer(unique("other"))
        refused = await http.get(f"/api/attachments/{attachment['id']}",
                                 headers={"Authorization": f"Bearer {stranger}"})
        assert refused.status_code in (403, 404)
        # An upload cannot ride on another shop's message.
        other, _ = await join(server, clients, stranger)
        theirs = await other.request({"type": "open_ticket", "title": "Moje", "body": "x",
                                      "attachments": [attachment["id"]]}, "ticket")
        assert theirs["type"] == "error"


async def test_help_search_finds_the_payment_article(server):
    async with httpx.AsyncClient(base_url=server.http) as http:
        found = await http.get("/api/help/search", params={"q": "nie działa płatność przelewy24"})
        assert found.status_code == 200
        first = found.json()["articles"][0]
        assert "przelewy24" in (first["title"] + first["id"]).lower()
        assert (await http.get("/api/help/search", params={"q": ""})).status_code == 400


@pytest.mark.parametrize("title,department", [("Faktury", "invoicing"), ("Nie działa BLIK", "payments"),
                                              ("Paczkomat InPost", "shipping")])
async def test_titles_route_to_departments_and_agents_reroute(server, clients, tokens, shop, title, department):
    customer, _ = await join(server, clients, tokens.customer(shop))
    ticket = (await customer.request({"type": "open_ticket", "title": title, "body": "Proszę o pomoc.",
                                      "client_id": str(uuid.uuid4())}, "ticket"))["ticket"]
    assert ticket["department"] == department
    agent, welcome = await join(server, clients, tokens.agent(unique("a"), departments=[department]))
    assert ticket["id"] in [t["id"] for t in welcome["tickets"]]
    assert all(t["department"] == department for t in welcome["tickets"])
    moved = await agent.request({"type": "update_ticket", "ticket": ticket["id"], "department": "sales"}, "ticket")
    assert moved["ticket"]["department"] == "sales"
    everything = await agent.request({"type": "list_tickets", "department": "*"}, "tickets")
    assert ticket["id"] in [t["id"] for t in everything["tickets"]]


async def test_a_vague_ticket_is_answered_with_a_request_for_the_missing_facts(server, clients, tokens, shop):
    customer, _ = await join(server, clients, tokens.customer(shop))
    vague = (await customer.request({"type": "open_ticket", "title": "Sklep się popsuł", "body": "Sklep się popsuł",
                                     "severity": "major", "client_id": str(uuid.uuid4())}, "ticket"))["ticket"]
    messages = [await customer.expect("message", ticket=vague["id"]) for _ in range(3)]
    asking = messages[2]
    assert asking["author"]["kind"] == "system"
    for fact in ("kiedy", "przeglądark", "zrzut"):
        assert fact in asking["body"].lower()
    agent, _ = await join(server, clients, tokens.agent(unique("a")))
    seen = await agent.request({"type": "follow", "ticket": vague["id"]}, "ticket")
    assert seen["ticket"]["context"]["completeness"]["too_vague"] is True
    complete = (await customer.request({
        "type": "open_ticket", "title": "Błąd płatności Przelewy24", "severity": "major", "client_id": "c2",
        "body": "Od dziś 9:00 klienci po wyborze Przelewy24 w koszyku widzą błąd 'nieprawidłowy podpis'. "
                "Sprawdziłem klucz CRC i zapisałem ustawienia ponownie. Oczekuję przywrócenia płatności.",
        "context": {"browser": "Firefox", "browser_version": "128", "page_url": "https://sklep.pl/koszyk",
                    "occurred_at": "2026-11-18T09:00", "order_url": "https://sklep.pl/admin/orders/1"}},
        "ticket"))["ticket"]
    first_two = [await customer.expect("message", ticket=complete["id"]) for _ in range(2)]
    await customer.request({"type": "ping"}, "pong")
    assert first_two[1]["author"]["kind"] == "system"
    assert not [m for m in customer.pending("message") if m["ticket"] == complete["id"]], "nothing more to ask"
