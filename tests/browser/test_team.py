"""Agents as a team in the console: who else has a ticket open and is writing in it,
a reply stopped because a teammate answered meanwhile, alerts while the console is
in the background, and the context panel (the shop's other tickets, its record,
teammates online, files sent from the console)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from playwright.async_api import Page, WebSocketRoute, expect

from tests import filesamples
from tests.browser.conftest import OpenTab
from tests.browser.harness import PomocServer
from tests.wsclient import Client

pytestmark = pytest.mark.browser

# Lets a test hide the page (document.hidden, hasFocus) and records every Notification made.
AWAY_AND_NOTIFICATIONS = """
window.__hidden = false;
window.__notes = [];
Object.defineProperty(Document.prototype, "hidden", { configurable: true, get() { return window.__hidden; } });
Object.defineProperty(Document.prototype, "visibilityState", { configurable: true,
  get() { return window.__hidden ? "hidden" : "visible"; } });
Document.prototype.hasFocus = function () { return !window.__hidden; };
(function () {
  var Real = window.Notification;
  function Recorded(title, options) {
    window.__notes.push({ title: title, body: options && options.body });
    return Real ? new Real(title, options) : {};
  }
  Object.defineProperty(Recorded, "permission", { get() { return Real ? Real.permission : "denied"; } });
  Recorded.requestPermission = function () { return Real.requestPermission(); };
  window.Notification = Recorded;
})();
"""


async def customer(server: PomocServer, shop: str = "shop-1") -> Client:
    client = await Client.connect(server.base.replace("http", "ws") + "/ws")
    await client.hello(server.token("customer", "owner-1", shop=shop, shop_name="Sklep Ani"))
    return client


async def opened(client: Client, title: str, body: str = "Klienci nie mogą zapłacić kartą.") -> dict[str, Any]:
    return (await client.request({"type": "open_ticket", "title": title, "body": body, "client_id": title},
                                 "ticket"))["ticket"]


async def console(tab_page: Page, server: PomocServer, sub: str, name: str) -> None:
    await tab_page.goto(server.base + "/agent#token=" + server.token("agent", sub, name=name))
    await expect(tab_page.locator("#conn")).to_have_text("Połączono")


async def open_in(page: Page, ticket_id: int) -> None:
    await page.locator(f'#tickets button[data-ticket="{ticket_id}"]').click()
    await expect(page.locator("#chat-title")).to_be_visible()


async def set_away(page: Page, hidden: bool) -> None:
    await page.evaluate("h => { window.__hidden = h; document.dispatchEvent(new Event('visibilitychange')); }", hidden)


async def test_agents_see_each_other_viewing_and_writing(pomoc: PomocServer, open_tab: OpenTab) -> None:
    shop = await customer(pomoc)
    try:
        ticket = await opened(shop, "Płatności kartą")
        other = await opened(shop, "Faktury")
        anna, bartek = await open_tab(), await open_tab()
        await console(anna.page, pomoc, "a-anna", "Anna")
        await console(bartek.page, pomoc, "a-bartek", "Bartek")
        await open_in(bartek.page, ticket["id"])
        await expect(bartek.page.locator("#viewers")).to_have_text("")
        await open_in(anna.page, ticket["id"])
        await expect(bartek.page.locator("#viewers")).to_have_text("Anna przegląda")
        await expect(anna.page.locator("#viewers")).to_have_text("Bartek przegląda")
        await anna.page.locator("#reply").press_sequentially("Dzień dobry, sprawdzam")
        await expect(bartek.page.locator("#typing")).to_have_text("Anna pisze odpowiedź…")
        # Anna turns to another ticket: Bartek sees her leave this one.
        await open_in(anna.page, other["id"])
        await expect(bartek.page.locator("#viewers")).to_have_text("")
        await open_in(anna.page, ticket["id"])
        await expect(bartek.page.locator("#viewers")).to_have_text("Anna przegląda")
        await anna.page.close()
        await expect(bartek.page.locator("#viewers")).to_have_text("")
        assert not bartek.errors and not anna.errors
    finally:
        await shop.close()


async def test_a_reply_stopped_by_a_teammate_s_answer_goes_out_only_when_confirmed(
        pomoc: PomocServer, open_tab: OpenTab) -> None:
    shop = await customer(pomoc)
    try:
        ticket = await opened(shop, "Wysyłka paczek")
        anna, bartek = await open_tab(), await open_tab()
        # Bartek's replies reach Anna's console late (as on a slow link): held while `hold` is on.
        hold = {"on": False, "held": []}

        def route(ws: WebSocketRoute) -> None:
            server = ws.connect_to_server()
            ws.on_message(lambda m: server.send(m))

            def down(message: str | bytes) -> None:
                frame = json.loads(message)
                if hold["on"] and frame.get("type") == "message" and frame["author"]["id"] == "a-bartek":
                    hold["held"].append(message)
                    return
                ws.send(message)

            server.on_message(down)
            hold["page"] = ws

        await anna.page.route_web_socket(re.compile(r"/ws$"), route)
        await console(anna.page, pomoc, "a-anna", "Anna")
        await console(bartek.page, pomoc, "a-bartek", "Bartek")
        await open_in(anna.page, ticket["id"])
        await open_in(bartek.page, ticket["id"])
        await expect(anna.page.locator("#viewers")).to_have_text("Bartek przegląda")
        hold["on"] = True
        await bartek.page.locator("#reply").fill("Już naprawione, proszę spróbować")
        await bartek.page.locator("#reply").press("Enter")
        await expect(bartek.page.locator("#log .msg.mine[data-seq]")).to_have_count(1)
        await anna.page.locator("#reply").fill("Proszę zrestartować sklep")
        await anna.page.locator("#reply").press("Enter")
        warning = anna.page.locator("#stale")
        await expect(warning).to_contain_text("Ktoś inny odpowiedział w międzyczasie")
        await expect(warning).to_contain_text("Bartek: Już naprawione, proszę spróbować")
        await shop.request({"type": "ping"}, "pong")
        assert not [f for f in shop.pending("message") if f["body"] == "Proszę zrestartować sklep"]
        # "Anuluj" takes the reply back into the box; sending it again asks again? No: now it has been shown.
        await warning.get_by_role("button", name="Anuluj").click()
        await expect(warning).to_be_hidden()
        await expect(anna.page.locator("#reply")).to_have_value("Proszę zrestartować sklep")
        # A second teammate reply, still held: this time "Wyślij mimo to".
        await bartek.page.locator("#reply").fill("Albo wyczyścić pamięć podręczną")
        await bartek.page.locator("#reply").press("Enter")
        await expect(bartek.page.locator("#log .msg.mine[data-seq]")).to_have_count(2)
        await anna.page.locator("#reply").press("Enter")
        await expect(warning).to_contain_text("Bartek: Albo wyczyścić pamięć podręczną")
        await warning.get_by_role("button", name="Wyślij mimo to").click()
        await expect(warning).to_be_hidden()
        got = await shop.expect("message", body="Proszę zrestartować sklep")
        assert got["author"]["name"] == "Anna"
        hold["on"] = False
        for message in hold["held"]:
            hold["page"].send(message)
        await expect(anna.page.locator("#log .msg.agent")).to_have_count(2)
        assert not anna.errors and not bartek.errors
    finally:
        await shop.close()


async def test_alerts_reach_an_agent_whose_console_is_in_the_background(pomoc: PomocServer,
                                                                        open_tab: OpenTab) -> None:
    shop = await customer(pomoc)
    teammate = await Client.connect(pomoc.base.replace("http", "ws") + "/ws")
    try:
        first = await opened(shop, "Faktury korekty")
        second = await opened(shop, "Domena sklepu")
        anna = await open_tab()
        await anna.context.grant_permissions(["notifications"], origin=pomoc.base)
        await anna.page.add_init_script(AWAY_AND_NOTIFICATIONS)
        await console(anna.page, pomoc, "a-anna", "Anna")
        base_title = await anna.page.title()
        await open_in(anna.page, first["id"])
        await anna.page.get_by_role("button", name="Do mnie").click()
        await expect(anna.page.locator(f'#tickets button[data-ticket="{first["id"]}"]')).to_contain_text("a-anna")
        await set_away(anna.page, True)
        # A customer's message on her ticket: a notification, and the count in the title.
        await shop.request({"type": "send", "ticket": first["id"], "body": "Nadal nie działa"}, "ack")
        await expect(anna.page).to_have_title("(1) " + base_title)
        notes = await anna.page.evaluate("window.__notes")
        assert notes == [{"title": "Nowa wiadomość: Faktury korekty", "body": "Jan Kowalski: Nadal nie działa"}]
        # A teammate assigns her the other ticket (a ticket she does not have open).
        await teammate.hello(pomoc.token("agent", "a-bartek", name="Bartek"))
        await teammate.request({"type": "update_ticket", "ticket": second["id"], "assignee": "a-anna"}, "ticket")
        await expect(anna.page).to_have_title("(2) " + base_title)
        assert (await anna.page.evaluate("window.__notes"))[-1]["title"] == f"Przypisano Ci zgłoszenie #{second['id']}"
        # A new ticket; then, with that kind switched off, another one alerts nobody.
        await opened(shop, "Zwroty towaru")
        await expect(anna.page).to_have_title("(3) " + base_title)
        assert (await anna.page.evaluate("window.__notes"))[-1]["title"].startswith("Nowe zgłoszenie #")
        await anna.page.evaluate("document.querySelector('[data-alert=new_ticket]').click()")
        assert json.loads(await anna.page.evaluate("localStorage.getItem('pomoc-agent-alerts')"))["new_ticket"] is False
        await opened(shop, "Kody rabatowe")
        await expect(anna.page.locator("#tickets")).to_contain_text("Kody rabatowe")
        await expect(anna.page).to_have_title("(3) " + base_title)
        # Back at the console: the count clears; while she looks, nothing alerts.
        await set_away(anna.page, False)
        await expect(anna.page).to_have_title(base_title)
        await shop.request({"type": "send", "ticket": first["id"], "body": "Halo?"}, "ack")
        await expect(anna.page.locator("#log")).to_contain_text("Halo?")
        assert len(await anna.page.evaluate("window.__notes")) == 3
        assert not anna.errors
    finally:
        await shop.close()
        await teammate.close()


async def test_the_context_panel_shows_the_shop_and_sends_the_agent_s_files(pomoc: PomocServer, open_tab: OpenTab,
                                                                            tmp_path) -> None:
    shop = await customer(pomoc)
    try:
        older = await opened(shop, "Integracja z kurierem")
        ticket = await opened(shop, "Płatności BLIK")
        anna, bartek = await open_tab(), await open_tab()
        await console(anna.page, pomoc, "a-anna", "Anna")
        await console(bartek.page, pomoc, "a-bartek", "Bartek")
        await open_in(anna.page, ticket["id"])
        others = anna.page.locator("#shop-tickets")
        await expect(others).to_contain_text(f"#{older['id']} Integracja z kurierem")
        await expect(others).not_to_contain_text("Płatności BLIK")
        await expect(anna.page.locator("#shop-record")).to_contain_text("Zgłoszone jako pilne")
        await expect(anna.page.locator("#shop-record")).to_contain_text("bez zastrzeżeń")
        await expect(anna.page.locator("#team")).to_contain_text("a-bartek")
        # A file from the console reaches the customer with the reply.
        sample = tmp_path / "instrukcja.txt"
        sample.write_bytes(filesamples.text_log())
        await anna.page.locator("#attach-file").set_input_files(str(sample))
        await expect(anna.page.locator("#attached")).to_contain_text("instrukcja.txt ✓")
        await anna.page.locator("#reply").fill("Instrukcja w załączniku")
        await anna.page.locator("#reply").press("Enter")
        got = await shop.expect("message", body="Instrukcja w załączniku")
        assert [a["name"] for a in got["attachments"]] == ["instrukcja.txt"]
        await expect(anna.page.locator("#log .msg.mine .att")).to_contain_text("instrukcja.txt")
        # The shop's other ticket opens from the panel.
        await others.get_by_role("button", name=re.compile("Integracja z kurierem")).click()
        await expect(anna.page.locator("#chat-title")).to_have_text("Integracja z kurierem")
        assert not anna.errors and not bartek.errors
    finally:
        await shop.close()
