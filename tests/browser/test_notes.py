"""Private notes in the browser: an agent writes one from the console, where it shows
as a note, and the customer's widget in another page never shows it — live, after a
reload (resume and history), or as the automatic notes of an assignment."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import expect

from tests.browser.conftest import OpenTab
from tests.browser.harness import PomocServer, screenshot_path
from tests.browser.test_chat import open_ticket_in_widget, seqs

pytestmark = pytest.mark.browser

NOTE = "Klient ma stare klucze Przelewy24 – nie cytować mu tego"
NOTE_YELLOW = "rgb(255, 246, 204)"


async def test_a_note_written_in_the_console_never_reaches_the_widget(pomoc: PomocServer, open_tab: OpenTab) -> None:
    customer = await open_tab()
    page = customer.page
    await page.goto(pomoc.base + "/demo")
    await page.locator("#pomoc-slot").get_by_role("button", name="POMOC").click()
    await open_ticket_in_widget(page, "Płatności Przelewy24 odrzucone",
                                "Od rana klienci nie mogą zapłacić przez Przelewy24 przy kasie, zamówienia wiszą "
                                "jako nieopłacone w panelu sklepu.")

    agent = await open_tab(1440, 860)
    console = agent.page
    await console.goto(pomoc.base + "/agent?demo=1")
    await expect(console.locator("#conn")).to_have_text("Połączono")
    await console.locator(".ticket", has_text="Płatności Przelewy24 odrzucone").click()
    await expect(console.locator("#log .msg[data-seq]")).to_have_count(2)

    # The toggle turns the composer into a note's, visibly.
    toggle = console.get_by_label("Notatka wewnętrzna")
    await toggle.check()
    await expect(console.locator("#composer")).to_have_class(re.compile(r"\binternal\b"))
    await expect(console.locator("#send")).to_have_text("Dodaj notatkę")
    await console.locator("#reply").fill(NOTE)
    await console.keyboard.press("Enter")
    note = console.locator("#log .msg.note[data-seq='3']")
    await expect(note).to_contain_text(NOTE)
    await expect(note.locator(".note-label")).to_have_text("Notatka — klient tego nie widzi")
    assert await note.evaluate("el => getComputedStyle(el).backgroundColor") == NOTE_YELLOW
    # The assignment's automatic note is a note too.
    await console.locator("#assign-me").click()
    auto = console.locator("#log .msg.system.note[data-seq='4']")
    await expect(auto).to_contain_text("przypisane do")
    await expect(auto.locator(".note-label")).to_be_visible()

    # Back to replying: the customer gets the reply and nothing else.
    await toggle.uncheck()
    await expect(console.locator("#send")).to_have_text("Wyślij")
    await console.locator("#reply").fill("Dzień dobry, prosimy wygenerować nowe klucze w panelu Przelewy24.")
    await console.keyboard.press("Enter")
    reply = console.locator("#log .msg[data-seq='5']")
    await expect(reply).to_contain_text("nowe klucze")
    await expect(reply).not_to_have_class(re.compile(r"\bnote\b"))
    await expect(page.locator(".msg[data-seq='5']")).to_contain_text("nowe klucze")
    if path := screenshot_path("console-note.png"):
        await console.screenshot(path=str(path))
    assert await seqs(page) == [1, 2, 5]
    widget_text = await page.locator("[data-pomoc]").evaluate("host => host.shadowRoot.textContent")
    assert NOTE not in widget_text and "przypisane" not in widget_text

    # A reload resumes and reads the history again: still no note.
    await page.reload()
    await page.locator("#pomoc-slot").get_by_role("button", name="POMOC").click()
    await page.locator("button.ticket", has_text="Płatności Przelewy24 odrzucone").click()
    await expect(page.locator(".msg[data-seq='5']")).to_contain_text("nowe klucze")
    assert await seqs(page) == [1, 2, 5]
    widget_text = await page.locator("[data-pomoc]").evaluate("host => host.shadowRoot.textContent")
    assert NOTE not in widget_text and "przypisane" not in widget_text

    # Another agent's console (a fresh page) reads the notes back as notes.
    await console.reload()
    await console.locator(".ticket", has_text="Płatności Przelewy24 odrzucone").click()
    await expect(console.locator("#log .msg[data-seq]")).to_have_count(5)
    await expect(console.locator("#log .msg.note")).to_have_count(2)
    await expect(console.get_by_label("Notatka wewnętrzna")).not_to_be_checked()
    assert customer.errors == [] and agent.errors == []
