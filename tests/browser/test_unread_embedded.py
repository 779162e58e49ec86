"""Unread counts live in embedded mode (the README's first command: the in-process Redis
stand-in, whose Lua must behave like Redis's): three replies make "3 nowe" at once."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.browser.conftest import OpenTab
from tests.browser.harness import PomocServer
from tests.wsclient import Client

pytestmark = pytest.mark.browser


async def test_three_agent_replies_show_three_new_live(pomoc: PomocServer, open_tab: OpenTab) -> None:
    tab = await open_tab()
    page = tab.page
    await page.goto(pomoc.base + "/demo")
    await page.get_by_role("button", name="POMOC").click()
    await page.get_by_role("button", name="Nowe zgłoszenie").click()
    await page.get_by_label("Tytuł").fill("Kody rabatowe")
    await page.get_by_label("Opis problemu").fill("Kod RABAT10 nie obniża ceny w koszyku od wczoraj rana.")
    await page.get_by_role("button", name="Wyślij zgłoszenie").click()
    await expect(page.locator(".msg.system[data-seq='2']")).to_be_visible()  # the acknowledgment
    await page.get_by_role("button", name="Wróć do listy zgłoszeń").click()
    line = page.locator("button.ticket", has_text="Kody rabatowe")
    ticket_id = int(await line.get_attribute("data-ticket") or "0")

    agent = await Client.connect(pomoc.base.replace("http", "ws") + "/ws")
    try:
        await agent.hello(pomoc.token("agent", "a-1", name="Ewa"))
        await agent.request({"type": "follow", "ticket": ticket_id}, "ticket")
        for n in (1, 2, 3):
            await agent.request({"type": "send", "ticket": ticket_id, "body": f"Odpowiedź {n}"}, "ack")
            await expect(line).to_contain_text(f"{n} nowe")  # live, no reload
    finally:
        await agent.close()
    await expect(page.locator(".badge")).to_be_visible()
    assert tab.errors == []
