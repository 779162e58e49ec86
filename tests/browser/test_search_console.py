"""The console's search box: words without Polish letters find a ticket written with
them, the result names the shop and shows the matching text, and opening it scrolls
to the matching message and marks it. A query with no word says so."""

from __future__ import annotations

import json

import pytest
import websockets
from playwright.async_api import expect
from websockets.typing import Subprotocol

from tests.browser.conftest import OpenTab
from tests.browser.harness import PomocServer

pytestmark = pytest.mark.browser


async def open_ticket(server: PomocServer, n: int, title: str, bodies: list[str]) -> None:
    token = server.token("customer", f"owner-{n}", shop=f"shop-{n}", shop_name=f"Sklep {n}")
    async with websockets.connect(server.base.replace("http", "ws") + "/ws",
                                  subprotocols=[Subprotocol("pomoc.v1.json")]) as ws:
        await ws.send(json.dumps({"type": "hello", "token": token}))
        assert json.loads(await ws.recv())["type"] == "welcome"
        await ws.send(json.dumps({"type": "open_ticket", "title": title, "severity": "minor", "body": bodies[0],
                                  "client_id": f"o-{n}", "ref": "o"}))
        reply = {}
        while reply.get("ref") != "o":
            reply = json.loads(await ws.recv())
        for i, body in enumerate(bodies[1:]):
            await ws.send(json.dumps({"type": "send", "ticket": reply["ticket"]["id"], "body": body,
                                      "client_id": f"s-{n}-{i}", "ref": f"s{i}"}))
            while json.loads(await ws.recv()).get("ref") != f"s{i}":
                pass


async def test_the_console_finds_a_ticket_by_words_and_opens_it_at_the_matching_message(pomoc: PomocServer,
                                                                                        open_tab: OpenTab) -> None:
    await open_ticket(pomoc, 1, "Paczkomat InPost", ["Paczkomaty zniknęły z koszyka."])
    await open_ticket(pomoc, 2, "Bramka", ["Dzień dobry, mam pytanie o sklep."]
                      + [f"Dodatkowa informacja numer {i}." for i in range(12)]
                      + ["Od rana PŁATNOŚĆ przez Przelewy24 nie przechodzi."])
    tab = await open_tab(1440, 900)
    page = tab.page
    await page.goto(pomoc.base + "/agent#token=" + pomoc.token("agent", "a-1", name="Ewa"))
    await expect(page.locator("#tickets button.ticket").first).to_be_visible()

    box = page.get_by_role("searchbox", name="Szukaj")
    await box.fill("platnosc przelewy24")
    await box.press("Enter")
    results = page.locator("#search-results button.ticket")
    await expect(results).to_have_count(1)
    await expect(results.first).to_contain_text("Bramka")
    await expect(results.first).to_contain_text("Sklep 2")
    await expect(results.first).to_contain_text("PŁATNOŚĆ przez Przelewy24")
    await results.first.click()
    await expect(page.locator("#chat-title")).to_have_text("Bramka")
    found = page.locator("#log .msg.found")
    await expect(found).to_have_count(1)
    await expect(found).to_contain_text("PŁATNOŚĆ przez Przelewy24")
    await expect(found).to_be_in_viewport()

    await box.fill("a ?")
    await box.press("Enter")
    await expect(page.locator("#search-error")).to_contain_text("co najmniej jedno słowo")
    assert tab.errors == []
