"""The console's inbox: pages of the most urgent tickets first, more on request, and an
open tab that says so when off-hours everything waits in the queue."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import websockets
from playwright.async_api import Browser, expect
from websockets.typing import Subprotocol

from tests.browser.conftest import OpenTab, Servers
from tests.browser.harness import PomocServer, embedded_env, free_port
from tests.wsclient import Client

pytestmark = pytest.mark.browser


async def open_ticket(server: PomocServer, n: int, severity: str) -> None:
    token = server.token("customer", f"owner-{n}", shop=f"shop-{n}", shop_name=f"Sklep {n}")
    async with websockets.connect(server.base.replace("http", "ws") + "/ws",
                                  subprotocols=[Subprotocol("pomoc.v1.json")]) as ws:
        await ws.send(json.dumps({"type": "hello", "token": token}))
        assert json.loads(await ws.recv())["type"] == "welcome"
        await ws.send(json.dumps({"type": "open_ticket", "title": f"Problem {severity}", "severity": severity,
                                  "body": "Klienci nie mogą zapłacić kartą.", "client_id": f"o-{n}", "ref": "o"}))
        while json.loads(await ws.recv()).get("ref") != "o":
            pass


async def test_the_console_lists_the_most_urgent_page_and_more_on_request(browser: Browser, tmp_path: Path) -> None:
    server = PomocServer(tmp_path, free_port(), embedded_env(POMOC_INBOX_PAGE="2"))
    await server.start()
    try:
        for n, severity in enumerate(["minor", "critical", "major"]):
            await open_ticket(server, n, severity)
        # A restart drops the inbox updates the new tickets' messages still have queued (sent
        # coalesced, up to a second later): one reaching the console would add a third ticket live.
        await server.restart()
        context = await browser.new_context(viewport={"width": 1440, "height": 860}, locale="pl-PL",
                                            timezone_id="Europe/Warsaw")
        await context.clock.install(time=server.now())
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(server.base + "/agent#token=" + server.token("agent", "a-1", name="Ewa"))
        tickets = page.locator("#tickets button.ticket")
        await expect(tickets).to_have_count(2)
        await expect(tickets.first).to_contain_text("Problem critical")
        more = page.get_by_role("button", name="Pokaż kolejne zgłoszenia")
        await expect(more).to_be_visible()
        await more.click()
        await expect(tickets).to_have_count(3)
        await expect(more).to_be_hidden()
        await expect(tickets.last).to_contain_text("Problem minor")
        assert errors == []
        await context.close()
    finally:
        await server.stop()


async def test_off_hours_the_empty_open_tab_says_tickets_wait_in_the_queue(servers: Servers,
                                                                         open_tab: OpenTab) -> None:
    # Wednesday evening after closing time: new tickets wait in the off-hours queue.
    server = await servers(POMOC_CLOCK=datetime(2026, 11, 25, 18, 30, tzinfo=ZoneInfo("Europe/Warsaw")).isoformat())
    for n in range(2):
        await open_ticket(server, n, "question")
    tab = await open_tab(1440, 860, server=server)
    page = tab.page
    await page.goto(server.base + "/agent#token=" + server.token("agent", "a-1", name="Ewa"))
    await expect(page.get_by_role("tab", name="Otwarte")).to_have_attribute("aria-selected", "true")
    await expect(page.locator("#tickets .empty")).to_contain_text("Brak otwartych zgłoszeń — 2 czekają w kolejce.")
    await page.get_by_role("button", name="Pokaż kolejkę").click()
    queue = page.get_by_role("tab", name=re.compile("W kolejce"))
    await expect(queue).to_have_attribute("aria-selected", "true")
    await expect(queue).to_be_focused()
    await expect(page.locator("#tickets button.ticket")).to_have_count(2)
    assert tab.errors == []


async def test_a_click_on_an_inbox_item_lands_while_updates_arrive(pomoc: PomocServer, open_tab: OpenTab) -> None:
    await open_ticket(pomoc, 1, "major")
    tab = await open_tab(1440, 860)
    page = tab.page
    await page.goto(pomoc.base + "/agent#token=" + pomoc.token("agent", "a-1", name="Ewa"))
    item = page.locator("#tickets .ticket", has_text="Problem major")
    await expect(item).to_be_visible()
    # Found and measured in one page call: an element redrawn between a handle and its use would measure 0 × 0.
    [box] = await item.evaluate_all("els => els.map(el => { const r = el.getBoundingClientRect(); "
                                    "return [r.x + r.width / 2, r.y + 12]; })")

    # Pressed on the item; before the release, another shop's new ticket reaches the inbox.
    await page.mouse.move(*box)
    await page.mouse.down()
    client = await Client.connect(pomoc.base.replace("http", "ws") + "/ws")
    try:
        await client.hello(pomoc.token("customer", "owner-2", shop="shop-2", shop_name="Sklep 2"))
        await client.request({"type": "open_ticket", "title": "Problem minor", "severity": "minor", "client_id": "o-2",
                              "body": "Klienci nie mogą zapłacić kartą."}, "ticket")
        await expect(page.locator("#tickets .ticket", has_text="Problem minor")).to_be_visible()
    finally:
        await client.close()
    await page.mouse.up()
    await expect(page.locator("#chat-title")).to_have_text("Problem major")
    assert tab.errors == []


async def test_the_console_offers_exactly_the_configured_departments(servers: Servers, browser: Browser) -> None:
    server = await servers(POMOC_DEPARTMENTS="payments:Płatności:przelew;returns:Zwroty:zwrot",
                           POMOC_DEFAULT_DEPARTMENT="payments")
    context = await browser.new_context(viewport={"width": 1440, "height": 860}, locale="pl-PL")
    page = await context.new_page()
    await page.goto(server.base + "/agent#token=" + server.token("agent", "a-1", name="Ewa"))
    options = page.locator("#filter-department option")
    await expect(options.filter(has_text="Zwroty")).to_have_count(1)
    # The built-in list (e.g. "Faktury") is gone: the server would refuse a department it does not know.
    await expect(options.filter(has_text="Faktury")).to_have_count(0)
    await expect(page.locator("#act-department option")).to_have_count(2)
    await context.close()
