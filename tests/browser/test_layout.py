"""Narrow screens: the widget on a phone, the console on a tablet and a phone.

Each check measures bounding boxes against the viewport: the widget's panel and its key
controls must lie inside it at 320, 375 and 768 px (also when POMOC is not the rightmost
item of the top bar, and when the widget floats), the pages must not scroll sideways, and
the console's inbox, open ticket, reply box and actions must be reachable and work.
"""

from __future__ import annotations

import json

import pytest
import websockets
from playwright.async_api import Locator, Page, expect
from websockets.typing import Subprotocol

from tests.browser.conftest import OpenTab
from tests.browser.harness import HostSite, PomocServer

pytestmark = pytest.mark.browser

WIDTHS = [320, 375, 768]
HEIGHTS = {320: 568, 375: 667, 768: 1024}


BOX = "el => { const r = el.getBoundingClientRect(); return {x: r.x, y: r.y, width: r.width, height: r.height}; }"
SCROLLED_BOX = "el => { el.scrollIntoView({block: 'nearest', inline: 'nearest'}); return (" + BOX + ")(el); }"


async def inside(locator: Locator, page: Page) -> None:
    """The element is shown and lies wholly inside the viewport (scrolled to first, as a finger would).

    Found, scrolled and measured in the page in one step (`evaluate_all` queries and runs in one call;
    `evaluate` takes a handle first and runs later): an inbox item redrawn by an update (a new unread
    count, the current ticket marked) is a new element, and a handle taken a moment earlier would be
    detached, measuring 0 × 0.
    """
    await expect(locator).to_be_visible()
    boxes = await locator.evaluate_all("els => els.map(" + SCROLLED_BOX + ")")
    assert len(boxes) == 1, (str(locator), boxes)
    box = boxes[0]
    size = page.viewport_size
    assert box["width"] > 0 and size, (str(locator), box)
    assert box["x"] >= 0 and box["x"] + box["width"] <= size["width"] + 0.5, (str(locator), box, size)
    assert box["y"] >= 0 and box["y"] + box["height"] <= size["height"] + 0.5, (str(locator), box, size)


async def no_sideways_scroll(page: Page) -> None:
    scroll, width = await page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    assert scroll <= width, f"the page is {scroll} px wide in a {width} px viewport"


async def customer_ticket(server: PomocServer, title: str) -> None:
    token = server.token("customer", "owner-9", shop="shop-9", shop_name="Sklep Dziewięć")
    async with websockets.connect(server.base.replace("http", "ws") + "/ws",
                                  subprotocols=[Subprotocol("pomoc.v1.json")]) as ws:
        await ws.send(json.dumps({"type": "hello", "token": token}))
        assert json.loads(await ws.recv())["type"] == "welcome"
        await ws.send(json.dumps({"type": "open_ticket", "title": title, "severity": "major", "client_id": "o-1",
                                  "body": "Klienci nie mogą zapłacić kartą od rana, zamówienia wiszą.", "ref": "o"}))
        while json.loads(await ws.recv()).get("ref") != "o":
            pass


@pytest.mark.parametrize("width", WIDTHS)
async def test_the_widget_fits_a_narrow_screen(width: int, pomoc: PomocServer, open_tab: OpenTab) -> None:
    tab = await open_tab(width, HEIGHTS[width])
    page = tab.page
    await page.goto(pomoc.base + "/demo")
    await no_sideways_scroll(page)
    launcher = page.get_by_role("button", name="POMOC")
    await inside(launcher, page)
    # POMOC is not the rightmost item of the demo's top bar: the user menu follows it.
    assert (await page.locator(".user").evaluate(BOX))["x"] > (await launcher.evaluate(BOX))["x"]
    await launcher.click()
    panel = page.locator("[data-pomoc] .panel")
    await inside(panel, page)
    await inside(page.get_by_role("button", name="Nowe zgłoszenie"), page)

    await page.get_by_role("button", name="Nowe zgłoszenie").click()
    await inside(panel, page)
    for control in (page.get_by_label("Tytuł"), page.get_by_label("Opis problemu"),
                    page.get_by_role("button", name="Wyślij zgłoszenie")):
        await inside(control, page)
    await page.get_by_label("Tytuł").fill("Płatności kartą")
    await page.get_by_label("Opis problemu").fill("Klienci nie mogą zapłacić kartą od rana, zamówienia wiszą w panelu.")
    await page.get_by_role("button", name="Wyślij zgłoszenie").click()
    await expect(page.locator(".msg[data-seq]")).to_have_count(2)

    # The chat: the composer and its send button are on screen, and sending works.
    await inside(panel, page)
    box = page.get_by_label("Twoja wiadomość")
    await inside(box, page)
    await inside(page.get_by_role("button", name="Wyślij", exact=True), page)
    await box.fill("Dotyczy wszystkich kart.")
    await page.get_by_role("button", name="Wyślij", exact=True).click()
    await expect(page.locator(".msg.mine[data-seq]")).to_have_count(2)
    await no_sideways_scroll(page)

    # Turning the phone (a narrower or wider viewport) keeps the open panel inside.
    await page.set_viewport_size({"width": 320, "height": 640})
    await inside(panel, page)
    assert tab.errors == []


async def test_the_floating_widget_fits_the_narrowest_phone(pomoc: PomocServer, host_site: HostSite,
                                                          open_tab: OpenTab) -> None:
    host_site.tokens = [pomoc.token()]
    host_site.pages["/plain"] = f"""<!doctype html><html lang="pl"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Sklep</title></head>
<body><p>Panel bez miejsca w pasku.</p>
<script src="{pomoc.base}/embed.js" data-token-url="/test-token"></script></body></html>"""
    page = (await open_tab(320, 568)).page
    await page.goto(host_site.base + "/plain")
    await page.get_by_role("button", name="POMOC").click()
    await expect(page.get_by_role("button", name="Nowe zgłoszenie")).to_be_visible()
    await inside(page.locator("[data-pomoc] .panel"), page)
    await inside(page.get_by_role("button", name="Nowe zgłoszenie"), page)


async def test_the_console_on_a_tablet_shows_inbox_and_ticket_side_by_side(pomoc: PomocServer,
                                                                          open_tab: OpenTab) -> None:
    await customer_ticket(pomoc, "Płatności kartą")
    tab = await open_tab(768, 1024)
    page = tab.page
    await page.goto(pomoc.base + "/agent?demo=1")
    await expect(page.locator("#conn")).to_have_text("Połączono")
    await no_sideways_scroll(page)
    for name in ("Otwarte", "Czeka na klienta", "W kolejce", "Rozwiązane"):
        await inside(page.get_by_role("tab", name=name), page)
    item = page.locator("#tickets .ticket", has_text="Płatności kartą")
    await inside(item, page)
    await item.click()
    # Both at once: the inbox item and the open ticket's reply box; neither squeezed by the
    # customer panel, the list and the conversation each get most of the screen's height.
    reply = page.get_by_label("Odpowiedź")
    await inside(reply, page)
    await inside(item, page)
    for part in ("#tickets", "#log"):
        box = await page.locator(part).evaluate(BOX)
        assert box["height"] >= 0.6 * HEIGHTS[768], (part, box)
    await reply.fill("Sprawdzamy operatora kart.")
    await reply.press("Enter")
    await expect(page.locator("#log .msg.mine[data-seq]")).to_have_count(1)
    # The customer and the actions are below the chat, in reach.
    await inside(page.locator("#customer"), page)
    status = page.locator("#act-status")
    await inside(status, page)
    await status.select_option("waiting_on_customer")
    await expect(page.locator("#chat-sub")).to_contain_text("czeka na klienta")
    await no_sideways_scroll(page)
    assert tab.errors == []


@pytest.mark.parametrize("width", [320, 375])
async def test_the_console_on_a_phone_shows_the_inbox_or_the_ticket(width: int, pomoc: PomocServer,
                                                                   open_tab: OpenTab) -> None:
    await customer_ticket(pomoc, "Płatności kartą")
    tab = await open_tab(width, HEIGHTS[width])
    page = tab.page
    await page.goto(pomoc.base + "/agent?demo=1")
    await expect(page.locator("#conn")).to_have_text("Połączono")
    await no_sideways_scroll(page)
    for control in (page.get_by_role("button", name="Wyloguj"), page.get_by_role("tab", name="Rozwiązane")):
        await inside(control, page)
    item = page.locator("#tickets .ticket", has_text="Płatności kartą")
    await inside(item, page)
    await item.click()

    # The ticket takes the screen: readable messages, the reply box in reach.
    message = page.locator("#log .msg[data-seq='1']")
    await inside(message, page)
    assert float(await message.locator(".text").evaluate("el => parseFloat(getComputedStyle(el).fontSize)")) >= 14
    reply = page.get_by_label("Odpowiedź")
    await inside(reply, page)
    await inside(page.get_by_role("button", name="Wyślij"), page)
    await reply.fill("Sprawdzamy operatora kart.")
    await reply.press("Enter")
    await expect(page.locator("#log .msg.mine[data-seq]")).to_have_count(1)
    await inside(page.locator("#act-status"), page)
    await no_sideways_scroll(page)

    # Back to the inbox.
    await page.get_by_role("button", name="‹ Zgłoszenia").click()
    await inside(item, page)
    await expect(item).to_be_focused()
    await expect(page.get_by_label("Odpowiedź")).to_be_hidden()
    await no_sideways_scroll(page)
    assert tab.errors == []
