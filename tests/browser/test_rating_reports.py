"""In the browser: a resolved ticket asks the customer "Czy problem został
rozwiązany?" and a rating closes it; "Nie" reopens it; a lead's console shows
"Raporty" (an agent's without lead does not), the report's tables and a CSV link,
with no serious axe violations in either view."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from playwright.async_api import expect

from server.web.tokens import mint
from tests.browser.conftest import OpenTab
from tests.browser.harness import SECRET, PomocServer
from tests.browser.test_accessibility import check
from tests.wsclient import Client


async def _agent(pomoc: PomocServer) -> Client:
    agent = await Client.connect(pomoc.base.replace("http://", "ws://") + "/ws")
    await agent.hello(pomoc.token("agent", sub="anna", name="Anna"), feed=False)
    return agent


async def _open_and_resolve(pomoc: PomocServer, open_tab: OpenTab, shop: str):
    tab = await open_tab()
    page = tab.page
    await page.goto(pomoc.base + "/demo")
    await page.get_by_role("button", name="POMOC").click()
    await page.get_by_role("button", name="Nowe zgłoszenie").click()
    await page.get_by_label("Tytuł").fill("Faktura korygująca")
    await page.get_by_label("Opis problemu").fill("Potrzebuję faktury korygującej do zamówienia 4821, kwota jest zła.")
    await page.get_by_role("button", name="Wyślij zgłoszenie").click()
    await expect(page.locator(".msg.system[data-seq='2']")).to_be_visible()
    agent = await _agent(pomoc)
    listed = await agent.request({"type": "list_tickets", "department": "*"}, "tickets")
    ticket = max(t["id"] for t in listed["tickets"])
    await agent.request({"type": "send", "ticket": ticket, "body": "Wystawiliśmy korektę."}, "ack")
    await agent.request({"type": "update_ticket", "ticket": ticket, "status": "resolved"}, "ticket")
    return tab, page, agent, ticket


async def test_a_resolved_ticket_asks_and_a_rating_closes_it(pomoc: PomocServer, open_tab: OpenTab) -> None:
    tab, page, agent, ticket = await _open_and_resolve(pomoc, open_tab, "shop-1")
    try:
        form = page.get_by_role("form", name="Czy problem został rozwiązany?")
        await expect(form).to_be_visible()
        seen: dict = {}
        await check(page, "the question of a resolved ticket", seen)
        await form.get_by_label("4", exact=True).check()
        await form.get_by_role("textbox", name="Komentarz (opcjonalnie)").fill("Szybko i konkretnie")
        await form.get_by_role("button", name="Tak").click()
        await expect(page.locator(".note.closed")).to_be_visible()
        await expect(form).to_be_hidden()
        await expect(page.locator(".msg.system", has_text="ocena 4/5")).to_be_visible()
        closed = await agent.request({"type": "follow", "ticket": ticket}, "ticket")
        assert closed["ticket"]["status"] == "closed"
        assert tab.errors == []
    finally:
        await agent.close()


async def test_no_reopens_the_ticket(pomoc: PomocServer, open_tab: OpenTab) -> None:
    tab, page, agent, ticket = await _open_and_resolve(pomoc, open_tab, "shop-1")
    try:
        form = page.get_by_role("form", name="Czy problem został rozwiązany?")
        await form.get_by_role("button", name="Nie").click()
        await expect(form).to_be_hidden()
        await expect(page.locator(".msg.system", has_text="nie został rozwiązany")).to_be_visible()
        reopened = await agent.request({"type": "follow", "ticket": ticket}, "ticket")
        assert reopened["ticket"]["status"] == "open" and reopened["ticket"]["sla_step"] == "next_response"
    finally:
        await agent.close()


async def test_a_lead_sees_the_reports(pomoc: PomocServer, open_tab: OpenTab) -> None:
    plain = (await open_tab()).page
    await plain.goto(pomoc.base + "/agent#token=" + pomoc.token("agent", sub="bartek", name="Bartek"))
    await expect(plain.locator("#conn")).to_have_text("Połączono")
    await expect(plain.get_by_role("button", name="Raporty")).to_be_hidden()

    lead = mint(SECRET, role="agent", sub="lidia", now=datetime.now(UTC), ttl=timedelta(hours=2), name="Lidia",
                lead=True)
    tab = await open_tab(1440, 900)
    console = tab.page
    await console.goto(pomoc.base + "/agent#token=" + lead)
    await expect(console.locator("#conn")).to_have_text("Połączono")
    await console.get_by_role("button", name="Raporty").click()
    dialog = console.get_by_role("dialog", name="Raporty")
    await expect(dialog).to_be_visible()
    day = pomoc.now().date().isoformat()
    await dialog.get_by_label("Od", exact=True).fill(day)
    await dialog.get_by_label("Do", exact=True).fill(day)
    await dialog.get_by_role("button", name="Pokaż").click()
    await expect(dialog.get_by_role("table", name="Razem")).to_be_visible()
    await expect(dialog.get_by_role("table", name="Według działu")).to_be_visible()
    csv = dialog.get_by_role("link", name="Pobierz CSV")
    await expect(csv).to_be_visible()
    assert (await csv.get_attribute("download")).endswith(".csv")
    seen: dict = {}
    await check(console, "the lead's reports", seen)
    assert tab.errors == []
