"""Ticket intake in the browser: attachments (pasted, dropped, checked), help suggestions
that can solve the problem before a ticket exists, routing to a department and the
completeness check, seen from both the widget and the console.

Files are made inside the page (a canvas drawn to a PNG, a text log) and delivered with
real `paste` and `drop` events carrying a DataTransfer, as a browser does for Ctrl+V or
a file dragged from the desktop.
"""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Locator, Page, expect

from tests.browser.conftest import OpenTab
from tests.browser.harness import PomocServer, screenshot_path

pytestmark = pytest.mark.browser

# A screenshot-like PNG drawn on a canvas, pasted as the clipboard's file.
PASTE_SCREENSHOT = """async (target) => {
  const canvas = document.createElement("canvas");
  canvas.width = 480; canvas.height = 270;
  const g = canvas.getContext("2d");
  g.fillStyle = "#f4f6f9"; g.fillRect(0, 0, 480, 270);
  g.fillStyle = "#c62828"; g.fillRect(40, 90, 400, 90);
  g.fillStyle = "#fff"; g.font = "bold 26px sans-serif"; g.fillText("Błąd płatności Przelewy24", 60, 145);
  const blob = await new Promise((done) => canvas.toBlob(done, "image/png"));
  const data = new DataTransfer();
  data.items.add(new File([blob], "zrzut-ekranu.png", { type: "image/png" }));
  const init = { clipboardData: data, bubbles: true, cancelable: true, composed: true };
  target.dispatchEvent(new ClipboardEvent("paste", init));
}"""

# Files dropped on an element: [name, type, size in bytes] each.
DROP_FILES = """(target, files) => {
  const data = new DataTransfer();
  for (const [name, type, size] of files) {
    const text = "Log błędu: 500 przy płatności\\n";
    data.items.add(new File([size ? new Uint8Array(size) : text], name, { type }));
  }
  for (const type of ["dragover", "drop"]) {
    target.dispatchEvent(new DragEvent(type, { dataTransfer: data, bubbles: true, cancelable: true, composed: true }));
  }
}"""

IMAGE_LOADED = """(img) => img.complete && img.naturalWidth > 0"""


async def image_loads(page: Page, img: Locator) -> None:
    """Wait until the image has really decoded (a broken link never gets a naturalWidth)."""
    await page.wait_for_function(IMAGE_LOADED, arg=await img.element_handle())


async def start_new_ticket(page: Page) -> None:
    await page.get_by_role("button", name="Nowe zgłoszenie").click()
    await expect(page.get_by_label("Tytuł")).to_be_focused()


async def open_ticket(page: Page, title: str, body: str) -> None:
    await start_new_ticket(page)
    await page.get_by_label("Tytuł").fill(title)
    await page.get_by_label("Opis problemu").fill(body)
    await page.get_by_role("button", name="Wyślij zgłoszenie").click()
    await expect(page.locator(".msg.mine[data-seq='1']")).to_be_visible()


async def test_attachments_suggestions_routing_and_completeness(pomoc: PomocServer, open_tab: OpenTab) -> None:
    customer = await open_tab()
    page = customer.page
    await page.goto(pomoc.base + "/demo")
    await page.get_by_role("button", name="POMOC").click()

    # First try: a help article answers the question, so no ticket is opened.
    await start_new_ticket(page)
    await page.get_by_label("Tytuł").fill("Płatności")
    await page.get_by_label("Opis problemu").fill("nie działa płatność przelewy24")
    suggestion = page.locator(".sug[data-article='platnosci-przelewy24']")
    await expect(suggestion).to_be_visible()
    await expect(page.locator(".sug")).to_have_count(3)
    link = suggestion.get_by_role("link", name=re.compile("Przelewy24"))
    await expect(link).to_have_attribute("target", "_blank")
    async with page.expect_response(lambda r: r.url.endswith("/api/help/deflections")) as answer:
        await suggestion.get_by_role("button", name="To rozwiązało mój problem").click()
    assert (await answer.value).status == 204
    await expect(page.get_by_role("status").filter(has_text="artykuł pomógł")).to_be_visible()
    await expect(page.get_by_text("Nie masz jeszcze zgłoszeń")).to_be_visible()
    assert await page.locator("button.ticket").count() == 0

    # Second try: the form starts empty; a pasted screenshot and a dropped log are attached.
    await start_new_ticket(page)
    await expect(page.get_by_label("Tytuł")).to_have_value("")
    await expect(page.get_by_label("Opis problemu")).to_have_value("")
    await page.get_by_label("Opis problemu").evaluate(PASTE_SCREENSHOT)
    shot = page.locator(".chip", has_text="zrzut-ekranu.png")
    await expect(shot).to_be_visible()
    await expect(shot).not_to_contain_text("wysyłanie")
    await expect(shot).not_to_have_class(re.compile(r"\bbad\b"))
    await image_loads(page, shot.locator("img"))
    form = page.locator("[data-pomoc] form.pad")
    await form.evaluate(DROP_FILES, [["log-bledu.txt", "text/plain", 0], ["program.exe", "application/x-msdownload", 0],
                                     ["ogromny.png", "image/png", 11 * 1024 * 1024]])
    log = page.locator(".chip", has_text="log-bledu.txt")
    await expect(log).to_be_visible()
    await expect(log).not_to_contain_text("wysyłanie")
    # Refused here, before any upload, with the reason in Polish; removable.
    await expect(page.locator(".chip.bad", has_text="program.exe")).to_contain_text("niedozwolony typ")
    await expect(page.locator(".chip.bad", has_text="ogromny.png")).to_contain_text("za duży")
    await page.get_by_role("button", name="Usuń program.exe").click()
    await page.get_by_role("button", name="Usuń ogromny.png").click()
    await expect(page.locator(".chip")).to_have_count(2)

    await page.get_by_label("Tytuł").fill("Przelewy24")
    await page.get_by_label("Opis problemu").fill("nie działa płatność przelewy24")
    await expect(suggestion).to_be_visible()
    if path := screenshot_path("intake.png"):
        await suggestion.scroll_into_view_if_needed()
        await page.screenshot(path=str(path))
    await page.get_by_role("button", name="Wyślij zgłoszenie").click()
    first = page.locator(".msg.mine[data-seq='1']")
    await expect(first.locator("img[alt='zrzut-ekranu.png']")).to_be_visible()
    await expect(first.locator("a", has_text="log-bledu.txt")).to_be_visible()
    await image_loads(page, first.locator("img"))

    # A ticket titled "Faktury" goes to invoicing; "Sklep się popsuł" is asked for the missing facts.
    await page.get_by_role("button", name="Wróć do listy zgłoszeń").click()
    await open_ticket(page, "Faktury", "Nie mogę wystawić faktury korygującej dla zamówienia z zeszłego tygodnia.")
    await page.get_by_role("button", name="Wróć do listy zgłoszeń").click()
    await open_ticket(page, "Sklep się popsuł", "Sklep się popsuł")
    await expect(page.locator(".msg.system", has_text="uzupełnij")).to_be_visible()
    await expect(page.locator(".msg.system", has_text="opis problemu")).to_be_visible()

    # The console: the screenshot loads from its signed link, the log is a download link.
    agent = await open_tab(1440, 900)
    console = agent.page
    await console.goto(pomoc.base + "/agent?demo=1")
    await expect(console.locator("#conn")).to_have_text("Połączono")
    await console.locator("#filter-department").select_option("*")
    await expect(console.locator("#tickets .ticket")).to_have_count(3)  # the deflected try opened none
    await console.locator(".ticket", has_text="Przelewy24").click()
    image = console.locator("#log img[alt='zrzut-ekranu.png']")
    await expect(image).to_be_visible()
    await image_loads(console, image)
    download = console.locator("#log a.file", has_text="log-bledu.txt")
    await expect(download).to_be_visible()
    got = await console.request.get(pomoc.base + (await download.get_attribute("href") or ""))
    assert got.status == 200 and "Log błędu" in await got.text()
    await expect(console.locator("#act-department")).to_have_value("payments")
    help_page = await console.request.get(pomoc.base + "/help/platnosci-przelewy24")
    assert help_page.status == 200 and "Przelewy24" in await help_page.text()

    # Routing: "Faktury" is in invoicing; the inbox filters by department key.
    await console.locator(".ticket", has_text="Faktury").click()
    await expect(console.locator("#act-department")).to_have_value("invoicing")
    await console.locator("#filter-department").select_option("invoicing")
    await expect(console.locator("#tickets .ticket")).to_have_count(1)
    await expect(console.locator("#tickets .ticket")).to_contain_text("Faktury")
    await console.locator("#filter-department").select_option("*")
    await expect(console.locator("#tickets .ticket")).to_have_count(3)

    # Completeness: the vague ticket scores low and lists what is missing.
    await console.locator(".ticket", has_text="Sklep się popsuł").click()
    meter = console.locator("#completeness [role=meter]")
    await expect(meter).to_be_visible()
    assert int(await meter.get_attribute("aria-valuenow") or "100") < 50
    await expect(console.locator("#completeness .missing")).to_contain_text("opis problemu")
    await expect(console.locator("#log .msg.system", has_text="uzupełnij")).to_be_visible()
    if path := screenshot_path("console-intake.png"):
        await console.screenshot(path=str(path))

    # Re-routing from the side panel reaches the inbox line.
    await console.locator("#act-department").select_option("shipping")
    await expect(console.locator(".ticket.current")).to_contain_text("Wysyłka")
    assert customer.errors == [] and agent.errors == []


async def test_attachment_in_chat_composer_reaches_the_console(pomoc: PomocServer, open_tab: OpenTab) -> None:
    customer = await open_tab()
    page = customer.page
    await page.goto(pomoc.base + "/demo")
    await page.get_by_role("button", name="POMOC").click()
    await open_ticket(page, "Import produktów",
                      "Import pliku CSV z produktami kończy się błędem w panelu produktów od rana.")
    # A file dropped on the chat is uploaded to the ticket and sent with the next message.
    await page.locator("[data-pomoc] .chat").evaluate(DROP_FILES, [["import.txt", "text/plain", 0]])
    chip = page.locator(".chip", has_text="import.txt")
    await expect(chip).not_to_contain_text("wysyłanie")
    await page.get_by_label("Twoja wiadomość").fill("Log z importu w załączniku.")
    await page.get_by_role("button", name="Wyślij", exact=True).click()
    await expect(page.locator(".chip")).to_have_count(0)
    sent = page.locator(".msg.mine[data-seq]", has_text="Log z importu")
    await expect(sent.locator("a", has_text="import.txt")).to_be_visible()

    agent = await open_tab(1440, 900)
    console = agent.page
    await console.goto(pomoc.base + "/agent?demo=1")
    await console.locator(".ticket", has_text="Import produktów").click()
    await expect(console.locator("#log .msg", has_text="Log z importu").locator("a.file")).to_contain_text("import.txt")
    assert customer.errors == [] and agent.errors == []
