"""Canned replies in the console: "/prz" in the composer inserts the Przelewy24 reply filled
in for the open ticket, and sending it reaches the customer; the panel creates, finds,
changes and deletes replies. In embedded mode and on Redis + PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Page, expect

from tests import services
from tests.browser.conftest import OpenTab, Servers
from tests.browser.harness import PomocServer, screenshot_path
from tests.browser.test_accessibility import check
from tests.conftest import drop_store, fresh_store
from tests.wsclient import Client

pytestmark = pytest.mark.browser
WAIT = 20.0  # a frame's budget on a loaded 2-core machine


@pytest.fixture(params=["embedded", "redis-postgresql"])
async def server(request: pytest.FixtureRequest, servers: Servers, tmp_path) -> AsyncIterator[PomocServer]:
    if request.param == "embedded":
        yield await servers()
        return
    services.require("Redis", services.REDIS_URL)
    settings = await asyncio.to_thread(fresh_store, "postgresql", tmp_path, "canned")
    try:
        yield await servers(DATABASE_URL=settings.database_url, POMOC_DATABASE_SCHEMA=settings.database_schema or "",
                            REDIS_URL=services.REDIS_URL,
                            POMOC_REDIS_PREFIX=f"{services.REDIS_PREFIX}canned-{uuid.uuid4().hex[:6]}:")
    finally:
        for started in servers.started:
            await started.stop()
        await asyncio.to_thread(drop_store, settings)


async def customer_with_ticket(server: PomocServer, title: str, body: str) -> tuple[Client, int]:
    client = await Client.connect(server.base.replace("http", "ws") + "/ws")
    await client.hello(server.token("customer", "owner-1", shop="shop-1", shop_name="Sklep Testowy",
                                    name="Jan Kowalski"))
    opened = await client.request({"type": "open_ticket", "title": title, "body": body, "severity": "major",
                                   "client_id": "o-1"}, "ticket", timeout=WAIT)
    assert opened["type"] == "ticket", opened
    return client, int(opened["ticket"]["id"])


async def open_console(page: Page, server: PomocServer, ticket: int, title: str) -> None:
    await page.goto(server.base + "/agent#token=" + server.token("agent", "a-1", name="Ewa"))
    await page.locator(f'#tickets [data-ticket="{ticket}"]').click()
    await expect(page.locator("#chat-title")).to_have_text(title)


async def test_prz_inserts_the_przelewy24_reply_for_the_shop_and_it_reaches_the_customer(
        server: PomocServer, open_tab: OpenTab) -> None:
    title = "Przelewy24 nie działa"
    customer, ticket = await customer_with_ticket(server, title, "Klienci nie mogą zapłacić przez Przelewy24.")
    try:
        tab = await open_tab(1440, 860, server=server)
        page = tab.page
        await open_console(page, server, ticket, title)
        reply = page.locator("#reply")
        await reply.press_sequentially("/prz")
        listbox = page.get_by_role("listbox", name="Szablony odpowiedzi")
        await expect(listbox).to_be_visible()
        option = listbox.get_by_role("option").filter(has_text="/przelewy24")
        await expect(option).to_have_attribute("aria-selected", "true")
        await expect(page.locator("#canned-status")).to_have_text("1 szablon. Enter wstawia.")
        await check(page, "the composer's list of canned replies", {})
        if path := screenshot_path("console-canned.png"):
            await page.screenshot(path=str(path))
        option_id = await option.get_attribute("id")
        await expect(reply).to_have_attribute("aria-activedescendant", option_id or "")

        await reply.press("Enter")  # picks the reply; it does not send "/prz"
        await expect(listbox).to_be_hidden()
        await expect(reply).not_to_have_attribute("aria-activedescendant", option_id or "")
        value = await reply.input_value()
        assert value.startswith("Dzień dobry Jan,\n\nsprawdziliśmy płatności w sklepie Sklep Testowy: "
                                "to jest konfiguracja kluczy Przelewy24 w Twoim sklepie, a nie błąd systemu.")
        assert f"#{ticket} „{title}”" in value and "/help/platnosci-przelewy24" in value and "{" not in value
        assert await page.locator("#log .msg.mine").count() == 0

        await reply.press("Enter")  # the list is closed: Enter sends
        got = await customer.expect("message", where=lambda f: f["author"]["kind"] == "agent", timeout=WAIT,
                                    ticket=ticket)
        assert "Sklep Testowy" in got["body"] and "a nie błąd systemu" in got["body"]
        await expect(page.locator("#log .msg.mine").last).to_contain_text("a nie błąd systemu")
        assert tab.errors == []
    finally:
        await customer.close()


async def test_the_list_follows_the_keyboard_and_escape_closes_it(server: PomocServer, open_tab: OpenTab) -> None:
    title = "Pytanie o wysyłkę"
    customer, ticket = await customer_with_ticket(server, title, "Jak ustawić paczkomaty InPost?")
    try:
        tab = await open_tab(1440, 860, server=server)
        page = tab.page
        await open_console(page, server, ticket, title)
        reply = page.locator("#reply")
        # Not at the start of a word: no list.
        await reply.press_sequentially("i/o ")
        await expect(page.locator("#canned-list")).to_be_hidden()
        await reply.fill("")
        await reply.press_sequentially("Na koniec: /")
        options = page.get_by_role("listbox").get_by_role("option")
        await expect(options.first).to_be_visible()
        # This ticket is not a payments one: the Przelewy24 reply (payments) is not offered.
        await expect(options.filter(has_text="/przelewy24")).to_have_count(0)
        await reply.press_sequentially("ko")
        await expect(options).to_have_count(1)
        await expect(options.first).to_contain_text("/koniec")
        await reply.press("Escape")
        await expect(page.locator("#canned-list")).to_be_hidden()
        await expect(reply).to_have_value("Na koniec: /ko")
        # A shortcut first, then title words ("Godziny pracy i czas…", "Czy mogę…"); arrows and Tab choose.
        await reply.fill("")
        await reply.press_sequentially("/cz")
        await expect(options).to_have_count(3)
        assert await options.evaluate_all("els => els.map(e => e.dataset.shortcut)") == ["czekam", "godziny", "koniec"]
        await reply.press("ArrowDown")
        await expect(options.nth(1)).to_have_attribute("aria-selected", "true")
        await expect(options.nth(0)).to_have_attribute("aria-selected", "false")
        await reply.press("ArrowUp")
        await reply.press("ArrowUp")  # wraps round to the last
        await expect(options.nth(2)).to_have_attribute("aria-selected", "true")
        await reply.press("ArrowDown")
        await reply.press("ArrowDown")
        await reply.press("Tab")
        await expect(reply).to_be_focused()
        value = await reply.input_value()
        assert value.startswith("Dzień dobry Jan,\n\ndział wsparcia pracuje od poniedziałku do piątku"), value
        assert tab.errors == []
    finally:
        await customer.close()


async def test_the_panel_creates_changes_and_deletes_a_reply(server: PomocServer, open_tab: OpenTab) -> None:
    title = "Zwrot towaru"
    customer, ticket = await customer_with_ticket(server, title, "Klient chce zwrócić zamówienie.")
    try:
        tab = await open_tab(1440, 860, server=server)
        page = tab.page
        await open_console(page, server, ticket, title)
        await page.get_by_role("button", name="Szablony odpowiedzi").click()
        dialog = page.get_by_role("dialog", name="Szablony odpowiedzi")
        await expect(dialog).to_be_visible()
        await expect(dialog.locator(".canned-item", has_text="Przelewy24")).to_have_count(1)
        await check(page, "the canned replies' panel", {})

        await dialog.get_by_role("button", name="Nowy szablon").click()
        await check(page, "the canned reply form", {})
        await dialog.get_by_label("Tytuł").fill("Zwrot — numer rachunku")
        await dialog.get_by_label("Skrót (wpisywany po „/”)").fill("dane")
        await dialog.get_by_label("Treść").fill("Dzień dobry {imie}, podaj numer rachunku dla {sklep}.")
        await dialog.get_by_role("button", name="Zapisz").click()
        # "dane" is a shared seeded reply: the server refuses, the form says why.
        await expect(dialog.locator("#canned-error")).to_contain_text("Ten skrót jest już zajęty")
        await dialog.get_by_label("Skrót (wpisywany po „/”)").fill("rachunek")
        await dialog.get_by_label("Treść").fill("Dzień dobry {imię}")
        await dialog.get_by_role("button", name="Zapisz").click()
        await expect(dialog.locator("#canned-error")).to_contain_text("unknown placeholder {imię}")
        await dialog.get_by_label("Treść").fill("Dzień dobry {imie}, podaj numer rachunku dla {sklep}.")
        await dialog.get_by_role("button", name="Zapisz").click()
        item = dialog.locator(".canned-item", has_text="Zwrot — numer rachunku")
        await expect(item).to_have_count(1)

        await item.get_by_role("button", name="Edytuj szablon Zwrot — numer rachunku").click()
        await dialog.get_by_label("Treść").fill("Dzień dobry {imie}, prosimy o numer rachunku ({sklep}).")
        await dialog.get_by_role("button", name="Zapisz").click()
        await expect(dialog.locator("#canned-form")).to_be_hidden()
        await page.keyboard.press("Escape")
        await expect(dialog).to_be_hidden()

        reply = page.locator("#reply")
        await reply.click()
        await reply.press_sequentially("/rach")
        option = page.get_by_role("option").filter(has_text="/rachunek")
        await option.click()
        await expect(reply).to_have_value("Dzień dobry Jan, prosimy o numer rachunku (Sklep Testowy).")

        await page.get_by_role("button", name="Szablony odpowiedzi").click()
        delete = dialog.get_by_role("button", name="Usuń szablon Zwrot — numer rachunku")
        await delete.click()
        await expect(delete).to_have_text("Na pewno usunąć?")
        # The list is drawn again between the two clicks (the panel's own reload on
        # opening can land there): the button still asks.
        async with page.expect_response(lambda r: "/api/canned" in r.url and r.request.method == "GET"):
            await dialog.locator("#canned-filter").dispatch_event("change")
        await expect(delete).to_have_text("Na pewno usunąć?")
        await delete.click()
        await expect(dialog.locator(".canned-item", has_text="Zwrot — numer rachunku")).to_have_count(0)
        await expect(dialog.locator(".canned-item", has_text="Przelewy24")).to_have_count(1)
        assert tab.errors == []
    finally:
        await customer.close()
