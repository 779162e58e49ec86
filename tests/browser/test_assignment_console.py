"""Assignment in the console: Pomoc's automatic assignment and a teammate's hand-over
reach the agent at once (`assigned`: the alert and its count in the tab's title), and
"Moje" lists the tickets assigned to her, from the server, whatever their department."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.async_api import expect

from server.web.tokens import mint
from tests.browser.conftest import OpenTab, Servers
from tests.browser.harness import SECRET
from tests.browser.test_team import AWAY_AND_NOTIFICATIONS, customer, opened, set_away
from tests.wsclient import Client

pytestmark = pytest.mark.browser


async def test_moje_lists_my_tickets_and_an_assignment_raises_the_alert(servers: Servers, open_tab: OpenTab) -> None:
    pomoc = await servers(POMOC_AUTO_ASSIGN="on")
    shop = await customer(pomoc)
    bartek = await Client.connect(pomoc.base.replace("http", "ws") + "/ws")
    try:
        anna = await open_tab()
        await anna.context.grant_permissions(["notifications"], origin=pomoc.base)
        await anna.page.add_init_script(AWAY_AND_NOTIFICATIONS)
        token = mint(SECRET, role="agent", sub="a-anna", name="Anna", departments=["payments"],
                     now=datetime.now(UTC), ttl=timedelta(days=1))
        await anna.page.goto(pomoc.base + "/agent#token=" + token)
        await expect(anna.page.locator("#conn")).to_have_text("Połączono")
        base_title = await anna.page.title()
        # Only the assignment's own alert, not the new ticket's.
        await anna.page.evaluate("document.querySelector('[data-alert=new_ticket]').click()")
        await set_away(anna.page, True)
        # Anna is the only agent online in payments: Pomoc gives her the new ticket.
        paying = await opened(shop, "Płatności kartą")
        await expect(anna.page).to_have_title("(1) " + base_title)
        notes = await anna.page.evaluate("window.__notes")
        assert [n["title"] for n in notes] == [f"Przypisano Ci zgłoszenie #{paying['id']}"]
        await set_away(anna.page, False)
        await expect(anna.page).to_have_title(base_title)
        mine = anna.page.get_by_role("tab", name=re.compile("Moje"))
        await expect(mine.locator(".count")).to_have_text("1")
        await mine.click()
        await expect(anna.page.locator(f'#tickets button[data-ticket="{paying["id"]}"]')).to_contain_text("a-anna")

        # A shipping ticket is not hers to take (her departments); Bartek, a bot without the
        # inbox feed (never online for assignment), hands it to her.
        shipping = await opened(shop, "Wysyłka paczek", "Kurier nie odbiera paczek od tygodnia.")
        assert shipping["department"] == "shipping" and shipping["assignee"] is None
        await bartek.hello(pomoc.token("agent", "a-bartek", name="Bartek"), feed=False)
        await set_away(anna.page, True)
        changed = await bartek.request({"type": "update_ticket", "ticket": shipping["id"], "assignee": "a-anna"},
                                       "ticket")
        assert changed["type"] == "ticket", changed
        await expect(anna.page).to_have_title("(1) " + base_title)
        last = (await anna.page.evaluate("window.__notes"))[-1]
        assert last == {"title": f"Przypisano Ci zgłoszenie #{shipping['id']}", "body": "Wysyłka paczek · przez Bartek"}
        await set_away(anna.page, False)
        await expect(anna.page.locator(f'#tickets button[data-ticket="{shipping["id"]}"]')).to_be_visible()

        # After a reload "Moje" comes from the server: the shipping ticket too, though her
        # inbox (payments) does not list it.
        await anna.page.reload()
        await expect(anna.page.locator("#conn")).to_have_text("Połączono")
        await expect(anna.page.locator(f'#tickets button[data-ticket="{paying["id"]}"]')).to_be_visible()
        await expect(anna.page.locator(f'#tickets button[data-ticket="{shipping["id"]}"]')).to_have_count(0)
        await anna.page.get_by_role("tab", name=re.compile("Moje")).click()
        await expect(anna.page.locator(f'#tickets button[data-ticket="{shipping["id"]}"]')).to_be_visible()
        await expect(anna.page.locator("#tickets button.ticket")).to_have_count(2)
        assert not anna.errors
    finally:
        await shop.close()
        await bartek.close()
