"""What the widget tells a customer about when support answers: the opening hours from
the server's calendar (`welcome.hours`), one opening and one deadline written
the way the server's acknowledgment writes them (Warsaw time), and no "queued" on a
ticket that is closed.

The servers here start on a Wednesday evening after closing time (POMOC_CLOCK), so
new tickets wait in the off-hours queue until Thursday 9:00.
"""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import OpenTab, Servers
from tests.browser.harness import PomocServer
from tests.wsclient import Client

pytestmark = pytest.mark.browser

WEDNESDAY_EVENING = datetime(2026, 11, 25, 18, 30, tzinfo=ZoneInfo("Europe/Warsaw"))
SATURDAY_MORNINGS = "mon-fri 09:00-17:00; sat 09:00-13:00"
# Dates as the browser's own locale would print them ("25 lis 2026"): never in the widget.
LOCALE_DATE = re.compile(r"\d{1,2} (sty|lut|mar|kwi|maj|cze|lip|sie|wrz|paź|lis|gru)\b")


async def open_ticket(page: Page, title: str) -> str:
    """Opens a ticket from the widget; returns the acknowledgment's expected reaction time."""
    await page.get_by_role("button", name="Nowe zgłoszenie").click()
    await page.get_by_label("Tytuł").fill(title)
    await page.get_by_label("Opis problemu").fill("Jak ustawić obniżoną stawkę VAT 8% dla książek w katalogu?")
    await page.get_by_role("button", name="Wyślij zgłoszenie").click()
    ack = page.locator(".msg.system[data-seq='2']")
    await expect(ack).to_contain_text("Oczekiwany czas reakcji")
    found = re.search(r"Oczekiwany czas reakcji: (.+)\.\s*$", await ack.inner_text())
    assert found, await ack.inner_text()
    return found.group(1)


async def agent(server: PomocServer) -> Client:
    client = await Client.connect(server.base.replace("http", "ws") + "/ws")
    await client.hello(server.token("agent", "a-1", name="Ewa"))
    return client


async def test_off_hours_the_widget_states_the_opening_hours_one_opening_and_one_deadline(
        servers: Servers, open_tab: OpenTab) -> None:
    server = await servers(POMOC_CLOCK=WEDNESDAY_EVENING.isoformat(), POMOC_HOURS=SATURDAY_MORNINGS)
    tab = await open_tab(server=server)
    page = tab.page
    await page.goto(server.base + "/demo")
    await page.get_by_role("button", name="POMOC").click()

    # Before writing anything: support is closed, when it opens, and its usual week (from the server).
    off = page.locator("[data-pomoc] .note.off")
    await expect(off).to_contain_text("Wsparcie jest teraz nieczynne, najbliższe otwarcie: czwartek 26.11 o 9:00.")
    await expect(off).to_contain_text("Godziny pracy: pon.–pt. 9:00–17:00, sob. 9:00–13:00.")

    due = await open_ticket(page, "Stawka VAT")
    weekday = "poniedziałku|wtorku|środy|czwartku|piątku|soboty|niedzieli"
    assert re.fullmatch(rf"do ({weekday}) \d\d\.\d\d, \d{{1,2}}:\d\d", due), due
    ack = page.locator(".msg.system[data-seq='2']")
    await expect(ack).to_contain_text("do najbliższego otwarcia: czwartek 26.11 o 9:00")
    # The status bar says the same opening and the same deadline, in the same words.
    status = page.locator("[data-pomoc] .status")
    await expect(status).to_have_text(re.compile(
        re.escape(f"Zgłoszenie czeka w kolejce do otwarcia: czwartek 26.11 o 9:00. Odpowiemy najpóźniej {due}.")))
    await expect(page.locator(".msg.mine .meta")).to_have_text(re.compile(r"^Ty · 18:3\d$"))  # Warsaw time, H:MM
    assert not LOCALE_DATE.search(await page.locator("[data-pomoc] .panel").inner_text())
    await page.get_by_role("button", name="Wróć do listy zgłoszeń").click()
    await expect(page.locator("button.ticket", has_text="Stawka VAT")).to_contain_text("w kolejce")
    assert tab.errors == []


async def test_a_closed_ticket_never_says_queued(servers: Servers, open_tab: OpenTab) -> None:
    server = await servers(POMOC_CLOCK=WEDNESDAY_EVENING.isoformat())
    tab = await open_tab(server=server)
    page = tab.page
    await page.goto(server.base + "/demo")
    await page.get_by_role("button", name="POMOC").click()
    await open_ticket(page, "Stawka VAT")
    await page.get_by_role("button", name="Wróć do listy zgłoszeń").click()
    line = page.locator("button.ticket", has_text="Stawka VAT")
    await expect(line).to_contain_text("w kolejce")
    ticket_id = int(await line.get_attribute("data-ticket") or "0")

    # Support closes it while it still waits in the queue.
    client = await agent(server)
    try:
        # (The closed ticket's frame still carries its queued_until; the widget must not read it as queued.)
        closed = await client.request({"type": "update_ticket", "ticket": ticket_id, "status": "closed"}, "ticket")
        assert closed["ticket"]["status"] == "closed"
    finally:
        await client.close()
    await expect(line).to_contain_text("zamknięte")
    await expect(line).not_to_contain_text("w kolejce")
    await line.click()
    await expect(page.locator(".note.closed")).to_be_visible()
    await expect(page.locator("[data-pomoc] .status")).to_be_hidden()  # the acknowledgment keeps its own words

    # Nor does the console, for the same ticket.
    console = (await open_tab(1440, 900, server=server)).page
    await console.goto(server.base + "/agent#token=" + server.token("agent", "a-2", name="Ola"))
    await console.locator("#filter-status").select_option("closed")
    await console.locator(".ticket", has_text="Stawka VAT").click()
    await expect(console.locator("#chat-sub")).to_contain_text("zamknięte")
    await expect(console.locator("#chat-sub")).not_to_contain_text("w kolejce")
    assert tab.errors == []


async def test_after_support_replies_the_status_bar_stops_promising_the_first_reaction(
        pomoc: PomocServer, open_tab: OpenTab) -> None:
    tab = await open_tab()
    page = tab.page
    await page.goto(pomoc.base + "/demo")
    await page.get_by_role("button", name="POMOC").click()
    due = await open_ticket(page, "Stawka VAT")
    status = page.locator("[data-pomoc] .status span")
    await expect(status).to_have_text(f"Odpowiemy najpóźniej {due}.")  # nobody from support online yet
    await page.get_by_role("button", name="Wróć do listy zgłoszeń").click()
    ticket_id = int(await page.locator("button.ticket").get_attribute("data-ticket") or "0")
    await page.locator("button.ticket").click()

    client = await agent(pomoc)
    try:
        await client.send({"type": "presence", "status": "online"})
        await expect(status).to_have_text(f"Konsultant jest teraz dostępny. Odpowiemy najpóźniej {due}.")
        await client.request({"type": "follow", "ticket": ticket_id}, "ticket")
        await client.request({"type": "send", "ticket": ticket_id, "body": "Proszę o zrzut ustawień VAT.",
                              "client_id": "a1"}, "ack")
        await client.request({"type": "update_ticket", "ticket": ticket_id, "status": "waiting_on_customer"}, "ticket")
        await expect(status).to_have_text("Konsultant jest teraz dostępny. Czekamy na Twoją odpowiedź.")
        await client.request({"type": "update_ticket", "ticket": ticket_id, "status": "open"}, "ticket")
        await expect(status).to_have_text("Konsultant jest teraz dostępny.")
    finally:
        await client.close()
    # Support has replied and nobody is online: the next answer comes in working hours (the server's calendar).
    await expect(status).to_have_text("Odpowiemy w godzinach pracy wsparcia: pon.–pt. 9:00–17:00.")
    assert tab.errors == []
